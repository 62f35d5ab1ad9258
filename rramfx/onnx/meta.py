"""The rramfx annotation of an ONNX graph: metadata keys, the device rule for every node, crossbar
tiling, and reading an annotated file back.

Keys on nodes (``NodeProto.metadata_props``):

- ``rramfx.device``: ``rram`` or ``cpu``, on every node, by the rule of `assign_node_devices`.
- ``rramfx.module``: module path of the weighted layer a node belongs to (its Conv/Gemm/MatMul and the
  nodes that build its weight: fault application, padding of ``Conv2dSame``, weight standardisation).
- ``rramfx.op`` (JSON, on the layer's Conv/Gemm/MatMul): type, kernel, groups, channels, MACs per sample.
- ``rramfx.drop_rate``, ``rramfx.fault_rate``, ``rramfx.weight_scale`` (1/(1-p')) and ``rramfx.crossbar``
  (JSON: rows x columns of one group's unrolled weight, groups, tile size, cells per weight, tile count:
  the arrays of `rramfx.crossbar.mapping.map_layer`, as in the cost report; ``encoding`` when it is
  not ``single``), on RRAM layer ops.
- ``rramfx.role`` = ``fault`` on the nodes that apply fault codes to an RRAM weight.

Model-level keys (``ModelProto.metadata_props``): ``rramfx.version``, ``rramfx.policy`` (JSON of
`rramfx.Policy.to_dict`), ``rramfx.placement`` (JSON module path → device), ``rramfx.fault_mode``
(``none`` | ``baked`` | ``inputs``), ``rramfx.faults`` (JSON, baked and inputs modes), ``rramfx.tile``
(``ROWSxCOLS``), ``rramfx.hardware`` (JSON of `rramfx.Hardware.to_dict`, the description the tiles were
counted on), ``rramfx.batch`` (``dynamic`` or the static batch size), ``rramfx.preprocessing`` (JSON:
``input_shape`` [C, H, W] of one input, ``layout`` NCHW, ``dtype``, and the normalisation ``mean`` and
``std`` per channel of pixel values scaled to [0, 1], null where not known) and, when known,
``rramfx.class_names`` (JSON list: output index -> class name).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.mapping import map_layer
from rramfx.crossbar.tiling import geometry, macs, weight_fan
from rramfx.errors import OnnxError, OnnxFileError

__all__ = [
    "BATCH",
    "CLASS_NAMES",
    "CODES_SUFFIX",
    "CROSSBAR",
    "DEVICE",
    "DROP_RATE",
    "FAULTS",
    "FAULT_MODE",
    "FAULT_RATE",
    "HARDWARE",
    "INHERIT_OPS",
    "MAIN_OPS",
    "MODULE",
    "OP",
    "PLACEMENT",
    "POLICY",
    "PREFIX",
    "PREPROCESSING",
    "ROLE",
    "SCALE",
    "TILE",
    "VERSION",
    "OnnxError",
    "assign_node_devices",
    "layer_info",
    "load_annotated",
    "macs_per_sample",
    "model_meta",
    "node_meta",
    "per_sample",
    "scope_module",
]

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

PREFIX = "rramfx."
DEVICE, MODULE, OP, ROLE = "rramfx.device", "rramfx.module", "rramfx.op", "rramfx.role"
DROP_RATE, FAULT_RATE = "rramfx.drop_rate", "rramfx.fault_rate"
SCALE, CROSSBAR = "rramfx.weight_scale", "rramfx.crossbar"
VERSION, POLICY, PLACEMENT = "rramfx.version", "rramfx.policy", "rramfx.placement"
FAULT_MODE, FAULTS, TILE, BATCH = "rramfx.fault_mode", "rramfx.faults", "rramfx.tile", "rramfx.batch"
HARDWARE = "rramfx.hardware"
CLASS_NAMES, PREPROCESSING = "rramfx.class_names", "rramfx.preprocessing"
CODES_SUFFIX = ".fault_codes"

#: ONNX ops that compute a weighted layer's product with its weight.
MAIN_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: Elementwise and normalisation ops: they run where their data comes from when it all comes from
#: one device (an activation or BatchNorm after a crossbar runs in the crossbar's periphery).
INHERIT_OPS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "Gelu", "Erf", "Softplus", "Softsign", "Mish", "Add", "Sub", "Mul", "Div", "Neg", "Abs",
    "Sqrt", "Reciprocal", "Pow", "Exp", "Log", "Min", "Max", "Sum", "Mean", "Identity", "Cast", "Dropout",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
})
_CALL_SUFFIX = re.compile(r"@\d+$")


# ---- layers -----------------------------------------------------------------------------------------

def layer_info(layer: nn.Module, device: str, hardware: Hardware) -> dict[str, str]:
    """The metadata of one weighted layer's main op (without MACs, which need the output shape); an
    RRAM layer's crossbar tiles are counted on ``hardware`` exactly as `rramfx.estimate_cost` counts them."""
    geo = geometry(layer)
    if geo.kind == "linear":
        op = {"type": "linear", "in": layer.in_features, "out": layer.out_features}
    else:
        op = {"type": geo.kind, "kernel": [int(k) for k in layer.kernel_size], "groups": geo.groups,
              "in": layer.in_channels, "out": layer.out_channels}
    info = {DEVICE: device, OP: json.dumps(op)}
    if device == "rram":
        p = float(getattr(layer, "fault_rate", 0.0))
        info[DROP_RATE] = repr(float(getattr(layer, "drop_rate", 0.0)))
        info[FAULT_RATE] = repr(p)
        info[SCALE] = repr(1.0 / (1.0 - p))
        crossbar = {"rows": geo.rows, "cols": geo.cols, "groups": geo.groups, "tile": list(hardware.tile),
                    "cells_per_weight": hardware.weight_cells, "tiles": map_layer(layer, hardware).arrays}
        if hardware.encoding != "single":
            crossbar["encoding"] = hardware.encoding
        info[CROSSBAR] = json.dumps(crossbar)
    return info


def scope_module(node: ir.Node, paths: Mapping[str, Any]) -> str | None:
    """The innermost weighted-layer module path among the exporter's name scopes of ``node``."""
    raw = node.metadata_props.get("pkg.torch.onnx.name_scopes")
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    for scope in reversed(scopes[:-1]):  # the last entry names the aten op, not a module
        scope = _CALL_SUFFIX.sub("", str(scope))
        if scope in paths:
            return scope
    return None


def per_sample(shape: ir.Shape | None) -> int | None:
    """Elements per sample of a batch-first shape, or None when a non-batch dim is unknown."""
    if shape is None or len(shape) == 0:
        return None
    dims = list(shape)[1:]
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else None


def macs_per_sample(node: ir.Node) -> int | None:
    """Multiply-accumulates per sample of a Conv/Gemm/MatMul node, from its output and weight shapes."""
    out = per_sample(node.outputs[0].shape)
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    wshape = weight.shape if weight is not None else None
    if out is None or wshape is None or not all(isinstance(d, int) for d in wshape):
        return None
    wdims = list(wshape)
    if node.op_type in ("Conv", "ConvTranspose"):
        kind = "conv" if node.op_type == "Conv" else "conv_transpose"
        inp = per_sample(node.inputs[0].shape) if kind == "conv_transpose" else 0
        return None if inp is None else macs(kind, weight_fan(kind, wdims), inp, out)
    trans_b = node.op_type == "Gemm" and node.attributes.get("transB") is not None \
        and node.attributes["transB"].as_int() == 1
    k = wdims[-1] if trans_b else wdims[-2] if len(wdims) >= 2 else wdims[0]
    return macs("linear", k, 0, out)


# ---- the device rule --------------------------------------------------------------------------------

def assign_node_devices(graph: ir.Graph, placement: Mapping[str, str]) -> None:
    """Give every node ``rramfx.device`` by this rule, in order:

    1. a node of a weighted layer (``rramfx.module``) runs where the layer is placed;
    2. an elementwise or normalisation node (`INHERIT_OPS`) whose data inputs all come from one
       device inherits that device (graph inputs come from the host, ``cpu``);
    3. a node with no data input (it computes from constants only) runs where all its consumers run,
       or on ``cpu`` when they disagree;
    4. everything else (pooling, reshapes, concatenation, softmax, ...) runs on the host, ``cpu``.
    """
    nodes = list(graph)
    static: set[ir.Node] = set()
    for node in nodes:
        module = node.metadata_props.get(MODULE)
        data = [v for v in node.inputs if v is not None and not _is_static(v, static)]
        if module is not None:
            node.metadata_props[DEVICE] = placement[module]
        elif not data:
            static.add(node)
        elif node.op_type in INHERIT_OPS:
            devices = {_value_device(v) for v in data}
            node.metadata_props[DEVICE] = devices.pop() if len(devices) == 1 else "cpu"
        else:
            node.metadata_props[DEVICE] = "cpu"
    for node in reversed(nodes):
        if node in static and MODULE not in node.metadata_props:
            consumers = {c.metadata_props.get(DEVICE, "cpu") for v in node.outputs for c in v.consumers()}
            node.metadata_props[DEVICE] = consumers.pop() if len(consumers) == 1 else "cpu"


def _is_static(value: ir.Value, static: set[ir.Node]) -> bool:
    if value.is_initializer() or value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer in static


def _value_device(value: ir.Value) -> str:
    producer = value.producer()
    return "cpu" if producer is None else producer.metadata_props.get(DEVICE, "cpu")


# ---- reading ----------------------------------------------------------------------------------------

def load_annotated(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file written by `rramfx.export_onnx`, or raise `OnnxError` saying what is wrong."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"ONNX file '{path}' does not exist; write one with `rramfx export` or rramfx.export_onnx")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise OnnxFileError(f"'{path}' is not a readable ONNX model: {reason}") from e
    model_meta(model, path)  # raises when the rramfx keys are missing
    return model


def model_meta(model: onnx.ModelProto, where: str | Path = "model") -> dict[str, Any]:
    """The model-level rramfx metadata, JSON values decoded; `OnnxError` if it has none."""
    props = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in (VERSION, PLACEMENT, FAULT_MODE) if k not in props]
    if missing:
        raise OnnxFileError(
            f"'{where}' has no rramfx metadata ({', '.join(missing)} missing): it was not written by "
            "rramfx.export_onnx. Export the prepared model with `rramfx export` or rramfx.export_onnx first."
        )
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key.startswith(PREFIX):
            short = key[len(PREFIX):]
            out[short] = json.loads(value) if key in (POLICY, PLACEMENT, FAULTS, HARDWARE) else value
    return out


def node_meta(node: onnx.NodeProto) -> dict[str, str]:
    """A node's rramfx metadata as a dict (keys without the ``rramfx.`` prefix)."""
    return {p.key[len(PREFIX):]: p.value for p in node.metadata_props if p.key.startswith(PREFIX)}
