"""A chip's read weights in an annotated ONNX graph: the model, or the onnxruntime session, whose RRAM
layers compute with the weights a given chip's crossbars read, in place of the graph's fault nodes.

Why: onnxruntime fuses BatchNorm into a Conv, re-lays its weight out in blocks (the NCHWc transformer)
and pre-packs it when it creates a session, but only for constant weights. A ``faults="inputs"`` graph
builds every RRAM weight from its codes on each call, so none of that happens and a chip ran slower
than in PyTorch. Here the fault nodes of every RRAM layer are cut out and its read weight (the fault
nodes' output: ``corrupt(weight, codes) x 1/(1-p')``) becomes an initializer ``<layer>.read_weight``;
`ReadWeightGraph.read_weights` computes a chip's values once, with the fault model's own
``read_weight`` (the function `rramfx.monte_carlo` uses, so the values are bit for bit PyTorch's), and
`ReadWeightGraph.session` opens a session on them.

How a session gets the weights (measured with onnxruntime 1.32): the template marks the read weights as
external data and each session supplies them with ``SessionOptions.add_external_initializers``, which
onnxruntime reads when it loads the graph, before any optimisation, and copies. ``add_initializer``
does not work: the BatchNorm fusion and the NCHWc transformer read the file's values, so a session
computes with the file's weights for some layers and the given ones for others (at the extended level
too), silently; tests/test_onnx_chip_sessions.py checks that each chip's output is its own.
`bake_read_weights` writes the weights into a self-contained model instead (a file for one chip).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rramfx.crossbar.faults import FaultSet
from rramfx.errors import ArgumentError, FaultError, OnnxError
from rramfx.onnx import meta as M
from rramfx.onnx.feed import session_options
from rramfx.onnx.plan import used_names

__all__ = ["READ_WEIGHT_SUFFIX", "ReadWeightGraph", "bake_read_weights", "read_weight_graph"]

if TYPE_CHECKING:
    import onnx

#: Name of a layer's read-weight initializer: ``<layer path>.read_weight``.
READ_WEIGHT_SUFFIX = ".read_weight"
_PLACEHOLDER = "rramfx-read-weights-in-memory"  # an external-data location no file has: data comes in memory


@dataclass(frozen=True)
class ReadWeightGraph:
    """An annotated model whose RRAM layers read their weights from initializers ``<layer>.read_weight``,
    ready to receive any chip's read weights (see the module docstring). Made by `read_weight_graph`.

    ``names``: layer path -> read-weight initializer; ``aliases``: the tensor names the file gave those
    weights (the fault nodes' output, or the initializer of a clean graph) -> layer path; ``healthy``:
    the read weights of a chip without a stuck cell; ``trained``: the weights as trained, from which a
    chip's read weights are computed (graphs with fault nodes only; empty for a clean graph, whose
    weights may be stored pre-scaled); ``fault_rates``: each layer's p'; ``template``: the serialised
    model with the read weights as in-memory external data; ``data_inputs``: the graph's inputs."""

    template: bytes
    names: dict[str, str]
    aliases: dict[str, str]
    healthy: dict[str, np.ndarray]
    trained: dict[str, np.ndarray]
    fault_rates: dict[str, float]
    data_inputs: tuple[str, ...]

    def scale(self, path: str) -> float:
        """The 1/(1-p') factor of a layer's read weight, computed as the crossbar layer computes it."""
        p = self.fault_rates[path]
        return 1.0 / (1.0 - p) if p > 0 else 1.0

    def read_weights(self, faults: FaultSet) -> dict[str, np.ndarray]:
        """The read weight of every layer on the chip ``faults`` (layers it has no codes for are healthy):
        ``faults.fault_model.read_weight(weight, codes, 1/(1-p'))``, the values `rramfx.monte_carlo`
        gives the layer, so the session computes what PyTorch computes on that chip."""
        if not self.trained:
            raise OnnxError("this graph has no fault nodes, so its trained weights are unknown (a clean export "
                            "may store them pre-scaled): build it from a faults='inputs' export")
        out = dict(self.healthy)
        for path, codes in faults.items():
            if path not in self.trained:
                raise FaultError(f"the fault set has codes for '{path}', which is not an RRAM layer of this graph")
            if tuple(codes.shape) != self.trained[path].shape:
                raise FaultError(f"codes for '{path}' have shape {tuple(codes.shape)}, its weight "
                                 f"{self.trained[path].shape}: the fault set was drawn for another model")
            weight = torch.from_numpy(self.trained[path])
            out[path] = faults.fault_model.read_weight(weight, codes, self.scale(path)).numpy()
        return out

    def resolve(self, read_weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``read_weights`` keyed by layer path, initializer or original tensor name, as contiguous arrays
        of each weight's dtype, keyed by initializer; layers not given get their healthy read weight."""
        out = {self.names[p]: w for p, w in self.healthy.items()}
        for key, value in read_weights.items():
            path = key if key in self.names else self.aliases.get(key)
            if path is None:
                more = ", ..." if len(self.names) > 6 else ""
                raise ArgumentError(f"read_weights: '{key}' is neither an RRAM layer nor its weight's name; the "
                                    f"layers are {', '.join(list(self.names)[:6])}{more}")
            want = self.healthy[path]
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if arr.shape != want.shape:
                raise ArgumentError(f"read_weights['{key}'] has shape {arr.shape}, layer '{path}' reads {want.shape}")
            out[self.names[path]] = np.ascontiguousarray(arr, dtype=want.dtype)
        return out

    def session(self, read_weights: Mapping[str, Any], *, threads: int | None = None,
                providers: Sequence[str] | None = None, optimized_path: str | Path | None = None) -> Any:
        """An onnxruntime ``InferenceSession`` (full optimisation) of the graph with these read weights
        (see `resolve`); onnxruntime copies them, so the arrays may change afterwards. ``threads``:
        intra-op threads (None: onnxruntime's default); ``optimized_path``: where onnxruntime saves the
        graph as it optimised it (see `rramfx.onnx.packed_weights`)."""
        import onnxruntime as ort

        weights = self.resolve(read_weights)
        opts = session_options(threads)
        if optimized_path is not None:
            opts.optimized_model_filepath = str(optimized_path)
        opts.add_external_initializers(list(weights), [ort.OrtValue.ortvalue_from_numpy(w) for w in weights.values()])
        return ort.InferenceSession(self.template, opts, providers=list(providers or ["CPUExecutionProvider"]))

    def bake(self, read_weights: Mapping[str, Any]) -> onnx.ModelProto:
        """A self-contained model (weights inside) computing with these read weights (see `resolve`)."""
        import onnx

        weights = self.resolve(read_weights)
        model = onnx.ModelProto.FromString(self.template)
        for init in model.graph.initializer:
            if init.name in weights:
                init.data_location = onnx.TensorProto.DEFAULT
                del init.external_data[:]
                init.raw_data = weights[init.name].tobytes()
        return model


def bake_read_weights(model: onnx.ModelProto | str | Path, read_weights: Mapping[str, Any]) -> onnx.ModelProto:
    """An annotated model (or file) with a chip's read weights baked in: ``read_weights`` maps RRAM layer
    paths (or the names of their weight tensors) to the weights the chip's crossbars read, 1/(1-p') scale
    included; layers not given read their healthy weight. The fault nodes and code inputs are gone, every
    other node and its metadata stays; ``rramfx.fault_mode`` becomes ``read_weights``. The model is not
    changed; save the result with ``onnx.save``."""
    return read_weight_graph(model).bake(read_weights)


def read_weight_graph(model: onnx.ModelProto | str | Path) -> ReadWeightGraph:
    """The `ReadWeightGraph` of an annotated model or file: with fault nodes (``faults="inputs"`` or a
    baked chip) each RRAM layer's fault nodes are cut out; in a clean graph the weight initializer
    its Conv/Gemm reads is taken. The model is not changed."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = M.load_annotated(model)
    meta = M.model_meta(model)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    inits = {t.name: t for t in work.graph.initializer}
    fault_nodes = [n for n in work.graph.node if M.node_meta(n).get("role") == "fault"]
    found = _cut_fault_nodes(work, fault_nodes, inits) if fault_nodes else _clean_weights(work, inits, meta)
    if not found:
        raise OnnxError("the model has no RRAM layer whose weight could be replaced (see rramfx.placement)")
    names, aliases, healthy, trained, rates = {}, {}, {}, {}, {}
    for path, (alias, weight, trained_weight, rate) in found.items():
        names[path], aliases[alias], healthy[path], rates[path] = path + READ_WEIGHT_SUFFIX, path, weight, rate
        aliases[names[path]] = path
        if trained_weight is not None:
            trained[path] = trained_weight
    _add_placeholders(work, names, healthy)
    _retag(work, meta, names)
    data_inputs = tuple(i.name for i in work.graph.input if i.name not in {t.name for t in work.graph.initializer})
    return ReadWeightGraph(work.SerializeToString(), names, aliases, healthy, trained, rates, data_inputs)


def _layer_rates(model: onnx.ModelProto) -> dict[str, float]:
    """Each RRAM layer's p', from its main op's ``rramfx.fault_rate``."""
    rates = {}
    for node in model.graph.node:
        meta = M.node_meta(node)
        if "fault_rate" in meta and "module" in meta:
            rates[meta["module"]] = float(meta["fault_rate"])
    return rates


def _cut_fault_nodes(model: onnx.ModelProto, fault_nodes: list[onnx.NodeProto], inits: dict[str, Any]
                     ) -> dict[str, tuple[str, np.ndarray, np.ndarray | None, float]]:
    """Remove the fault nodes, code inputs and unused initializers from ``model`` (in place); rename
    each layer's read weight (the fault nodes' output the rest reads) to ``<layer>.read_weight``.
    Returns layer path -> (old name, healthy read weight, trained weight, p')."""
    from onnx import numpy_helper

    graph = model.graph
    module_of = {o: M.node_meta(n)["module"] for n in fault_nodes for o in n.output}
    ids = {id(n) for n in fault_nodes}
    rest = [n for n in graph.node if id(n) not in ids]
    read: dict[str, set[str]] = {}
    for name in [x for n in rest for x in used_names(n)] + [o.name for o in graph.output]:
        if name in module_of:
            read.setdefault(module_of[name], set()).add(name)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    rates = _layer_rates(model)
    found = {}
    for path, outs in read.items():
        if len(outs) != 1:
            raise OnnxError(f"the fault nodes of '{path}' give the rest of the graph {len(outs)} tensors, "
                            "not one weight")
        old = outs.pop()
        tensor = _trained_weight(path, fault_nodes, inits, shapes.get(f"{path}{M.CODES_SUFFIX}"))
        weight = np.array(numpy_helper.to_array(tensor))  # a writable copy, for torch.from_numpy
        rate = rates.get(path, 0.0)
        healthy = weight * weight.dtype.type(1.0 / (1.0 - rate)) if rate > 0 else weight.copy()
        found[path] = (old, healthy, weight, rate)
        _rename_input(rest, graph.output, old, path + READ_WEIGHT_SUFFIX)
    del graph.node[:]
    graph.node.extend(rest)
    codes = {f"{p}{M.CODES_SUFFIX}" for p in set(module_of.values())}
    kept = [i for i in graph.input if i.name not in codes]
    del graph.input[:]
    graph.input.extend(kept)
    _drop_unused_initializers(graph)
    return found


def _trained_weight(path: str, fault_nodes: list[onnx.NodeProto], inits: dict[str, Any],
                    shape: list[int] | None) -> Any:
    """The initializer holding layer ``path``'s trained weight among those its fault nodes read: a float
    tensor of the codes' ``shape``, ``<path>.weight`` when the exporter kept that name, else the only one
    that is not all zeros (the fault nodes also read zero tensors of that shape; when the weight itself
    is all zeros, any of them holds its values)."""
    from onnx import numpy_helper

    read = {x for n in fault_nodes if M.node_meta(n).get("module") == path for x in n.input}
    candidates = [inits[x] for x in sorted(read) if x in inits and inits[x].data_type in _FLOATS
                  and list(inits[x].dims) == shape]
    named = [t for t in candidates if t.name == f"{path}.weight"]
    if named:
        return named[0]
    nonzero = [t for t in candidates if np.any(numpy_helper.to_array(t))]
    if len(nonzero) == 1 or (not nonzero and candidates):
        return (nonzero or candidates)[0]
    raise OnnxError(f"cannot tell which tensor is the trained weight of '{path}' among "
                    f"{[t.name for t in candidates]}: export the model again with rramfx.export_onnx")


_FLOATS = frozenset({1, 10, 11, 16})  # TensorProto float, float16, double, bfloat16


def _clean_weights(model: onnx.ModelProto, inits: dict[str, Any], meta: dict[str, Any]
                   ) -> dict[str, tuple[str, np.ndarray, None, float]]:
    """In a graph without fault nodes, each RRAM layer's read weight is the initializer its Conv/Gemm/
    MatMul reads as weight; it is renamed ``<layer>.read_weight`` in that node only (``model`` in place),
    so a weight the optimiser shared between layers is replaced for one layer at a time."""
    from onnx import numpy_helper

    rram = {p for p, d in meta["placement"].items() if d == "rram"}
    rates = _layer_rates(model)
    found = {}
    for node in model.graph.node:
        path = M.node_meta(node).get("module")
        if path not in rram or node.op_type not in M.MAIN_OPS or path in found:
            continue
        name = node.input[1] if len(node.input) > 1 else ""
        if name not in inits:
            raise OnnxError(f"the weight of RRAM layer '{path}' is computed in the graph ('{name}'), not stored: "
                            "build the read-weight graph from a faults='inputs' export")
        found[path] = (name, np.array(numpy_helper.to_array(inits[name])), None, rates.get(path, 0.0))
        node.input[1] = path + READ_WEIGHT_SUFFIX
    _drop_unused_initializers(model.graph)
    return found


def _rename_input(nodes: list[onnx.NodeProto], outputs: Any, old: str, new: str) -> None:
    if any(o.name == old for o in outputs):
        raise OnnxError(f"'{old}', an RRAM layer's weight, is a graph output; a read-weight graph cannot replace it")
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {x for n in graph.node for x in used_names(n)} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _add_placeholders(model: onnx.ModelProto, names: dict[str, str], healthy: dict[str, np.ndarray]) -> None:
    """Add every read weight as an initializer whose data is external, at a location no file has: a
    session must be given all of them (`ReadWeightGraph.session`), a baked model gets its bytes."""
    import onnx
    from onnx import helper

    for path, name in names.items():
        w = healthy[path]
        tensor = onnx.TensorProto(name=name, dims=list(w.shape), data_type=helper.np_dtype_to_tensor_dtype(w.dtype),
                                  data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", _PLACEHOLDER), ("offset", "0"), ("length", str(w.nbytes))):
            tensor.external_data.add(key=key, value=value)
        model.graph.initializer.append(tensor)


def _retag(model: onnx.ModelProto, meta: dict[str, Any], names: dict[str, str]) -> None:
    """Model metadata of a read-weight graph: fault mode ``read_weights``, and in ``rramfx.faults`` the
    read-weight initializer of each layer (plus the fault model, when the source had one)."""
    faults = {"read_weights": dict(names)}
    if isinstance(meta.get("faults"), dict) and "fault_model" in meta["faults"]:
        faults["fault_model"] = meta["faults"]["fault_model"]
    values = {M.FAULT_MODE: "read_weights", M.FAULTS: json.dumps(faults, sort_keys=True)}
    for prop in model.metadata_props:
        if prop.key in values:
            prop.value = values.pop(prop.key)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
