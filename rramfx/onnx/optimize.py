"""Annotate the exporter's unoptimised graph with rramfx keys, optimise it without losing them, and
apply the device rule to the final graph (see `rramfx.onnx.export` for why in this order)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import rewriter
from onnxscript.optimizer import _constant_folding

from rramfx.errors import OnnxError
from rramfx.onnx import meta as M

__all__ = ["optimize_annotated"]


def _rewrite_rules() -> list:
    """onnxscript's default rewrite rules without the BatchNorm-into-Conv/Gemm fusion: a fused BatchNorm
    would change the weights that an RRAM crossbar is programmed with (and what a SA0 cell reads)."""
    rules = list(getattr(rewriter, "_DEFAULT_REWRITE_RULES", ()))
    try:
        from onnxscript.rewriter.rules.common import _fuse_batchnorm

        fused = set(_fuse_batchnorm.rules)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another onnxscript layout
        fused = set()
    return [r for r in rules if r not in fused]


def _annotate_scopes(graph: ir.Graph, infos: Mapping[str, dict[str, str]], protect_faults: bool) -> None:
    """Mark the nodes of every weighted layer (module path, device; main op keys), and in the fault
    modes the nodes that build an RRAM weight from its codes (``rramfx.role = fault``).

    A layer is found by the exporter's name scopes; a layer called from inside a leaf module has no
    scope of its own, so its Conv/Gemm/MatMul is found by the weight it reads (``<path>.weight`` or
    ``<path>.fault_codes``), and the nodes building that weight are claimed for it."""
    for node in graph:
        module = M.scope_module(node, infos)
        if module is None and node.op_type in M.MAIN_OPS and len(node.inputs) > 1:
            module = _weight_owner(node.inputs[1], infos)
            if module is not None:
                _claim(node.inputs[1], module, infos[module][M.DEVICE])
        if module is None:
            continue
        node.metadata_props[M.MODULE] = module
        node.metadata_props[M.DEVICE] = infos[module][M.DEVICE]
        if node.op_type in M.MAIN_OPS:
            node.metadata_props.update(infos[module])
            if protect_faults and infos[module][M.DEVICE] == "rram" and len(node.inputs) > 1:
                _mark_weight_builders(node.inputs[1], module)


def _weight_owner(value: ir.Value | None, infos: Mapping[str, object]) -> str | None:
    """The layer whose parameter or fault codes a main op's weight operand is computed from."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if v is None or id(v) in seen:
            continue
        seen.add(id(v))
        for suffix in (".weight", M.CODES_SUFFIX):
            if v.name and v.name.endswith(suffix) and v.name[: -len(suffix)] in infos:
                return v.name[: -len(suffix)]
        producer = v.producer()
        if producer is not None and M.MODULE not in producer.metadata_props:
            stack.extend(producer.inputs)
    return None


def _claim(value: ir.Value | None, module: str, device: str) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        producer = v.producer() if v is not None else None
        if producer is None or M.MODULE in producer.metadata_props:
            continue
        producer.metadata_props[M.MODULE] = module
        producer.metadata_props[M.DEVICE] = device
        stack.extend(producer.inputs)


def _mark_weight_builders(value: ir.Value | None, module: str) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        producer = v.producer() if v is not None else None
        if producer is None or producer.metadata_props.get(M.MODULE) != module:
            continue
        if producer.metadata_props.get(M.ROLE) == "fault":
            continue
        producer.metadata_props[M.ROLE] = "fault"
        stack.extend(producer.inputs)


def _optimize(model: ir.Model) -> None:
    """onnxscript's ``optimize_ir`` pipeline with our rule set and fault nodes kept unfolded."""

    def should_fold(node: ir.Node) -> bool | None:
        # a fault node folds only when it computes from small constants (a scalar cast); one that reads
        # a weight or fault codes stays, or folding would turn the uint8 codes into a float weight
        if node.metadata_props.get(M.ROLE) != "fault":
            return None
        small = all(v is None or (v.const_value is not None and v.const_value.size <= 16) for v in node.inputs)
        return None if small else False

    passes = [
        common_passes.InlinePass(),
        ir.passes.PassManager(
            [
                _constant_folding.FoldConstantsPass(
                    shape_inference=True,
                    input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                    output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
                    should_fold=should_fold,
                ),
                rewriter.RewritePass(_rewrite_rules()),
                common_passes.RemoveUnusedNodesPass(),
                common_passes.RemoveUnusedFunctionsPass(),
                common_passes.RemoveUnusedOpsetsPass(),
            ],
            steps=2,
            early_stop=True,
        ),
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.LiftSubgraphInitializersToMainGraphPass(),
        common_passes.DeduplicateInitializersPass(),
        common_passes.CommonSubexpressionEliminationPass(),
        common_passes.OutputFixPass(),
        common_passes.NameFixPass(),
    ]
    ir.passes.Sequential(*passes)(model)


def optimize_annotated(
    model: ir.Model, infos: Mapping[str, dict[str, str]], placement: Mapping[str, str], protect_faults: bool
) -> None:
    """Annotate, optimise and finish the annotation of an exported model, in place."""
    _annotate_scopes(model.graph, infos, protect_faults)
    _optimize(model)
    graph = model.graph
    seen: set[str] = set()
    for node in graph:
        module = node.metadata_props.get(M.MODULE)
        if module is None or node.op_type not in M.MAIN_OPS:
            continue
        node.metadata_props.update(infos[module])  # a rewrite may have merged another node's keys in
        op = json.loads(node.metadata_props[M.OP])
        op["macs"] = M.macs_per_sample(node)
        node.metadata_props[M.OP] = json.dumps(op)
        seen.add(module)
    M.assign_node_devices(graph, placement)
    missing = [p for p in infos if p not in seen]
    if missing:
        warnings.warn(
            f"rramfx.export_onnx: {len(missing)} weighted layer(s) have no Conv/Gemm/MatMul node in the "
            f"ONNX graph (never called by forward, or computed another way): {', '.join(missing[:8])}",
            stacklevel=3,
        )
    if any(M.DEVICE not in n.metadata_props for n in graph):  # pragma: no cover - the rule covers all
        raise OnnxError("internal error: a node was left without rramfx.device")
