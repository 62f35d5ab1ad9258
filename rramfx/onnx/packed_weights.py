"""One onnxruntime session for every chip: the graph as onnxruntime optimised it, with each RRAM weight,
in the layout onnxruntime gave it, turned into an input that each chip feeds.

Why: a session per chip (`rramfx.onnx.chip_sessions`) pays for onnxruntime's optimisation of the whole
graph on every chip: the BatchNorm fusion and the NCHWc re-layout of every weight cost resnet18 55-80 ms
on one thread, two batches' worth of inference, so a Monte-Carlo chip of a few batches was hardly faster
than in PyTorch. What onnxruntime does to a constant weight on its way into the optimised graph is, per
position, a gather and a factor: it multiplies output channels (a fused BatchNorm or Mul) and moves the
values into its blocked layout, padding with zeros. `pack_chips` learns that map once per graph: it
opens sessions of the read-weight graph whose weights spell out their own position (the flat index, in
two parts each exact in float32, and the layer), saves the graphs onnxruntime optimised, and reads each
optimised weight back as an index into one layer's read weight and a factor. A chip's optimised weights
are then one gather and one multiply per layer, bit for bit what onnxruntime's own optimisation gives
(checked on the healthy weights when the map is built), and one session on the saved graph, with those
weights as inputs and optimisation off, runs every chip.

A graph that does not decode this way (a weight onnxruntime transforms otherwise, weights that are not
float32, a provider other than the CPU's, a model too large to save) gets None from `pack_chips`, and
its caller opens a session per chip instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rramfx.onnx.chip_sessions import ReadWeightGraph
from rramfx.onnx.feed import session_options

__all__ = ["PackedChips", "WeightSlot", "pack_chips"]

if TYPE_CHECKING:
    import onnx

_LOW = 4096  # a probed position is (flat index mod 4096) + 1 and (flat index // 4096) * layers + layer + 1
_EXACT = 2 ** 20  # probe values stay below this, so value x factor / factor rounds back to it in float32


@dataclass(frozen=True)
class WeightSlot:
    """One weight input of a packed graph: ``layer``'s read weight taken at the flat positions ``index``
    and multiplied by ``factor`` (None: by one); positions onnxruntime pads have factor 0."""

    name: str
    layer: str
    shape: tuple[int, ...]
    index: np.ndarray
    factor: np.ndarray | None

    def values(self, read_weight: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """This input's values for a chip whose ``layer`` reads ``read_weight``, written into ``out`` (a
        float32 array of ``shape``) when given."""
        out = np.empty(self.shape, np.float32) if out is None else out
        flat = out.reshape(-1)
        np.take(np.ascontiguousarray(read_weight, dtype=np.float32).reshape(-1), self.index, out=flat, mode="clip")
        if self.factor is not None:
            np.multiply(flat, self.factor, out=flat)
        return out


@dataclass(frozen=True)
class PackedChips:
    """onnxruntime's optimised graph with the RRAM weights as inputs (``model``, serialised) and how a
    chip's read weights become those inputs (``slots``). Made by `pack_chips`."""

    model: bytes
    slots: tuple[WeightSlot, ...]
    _buffers: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def feed(self, read_weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The weight inputs of a chip, from its read weights keyed by layer path (as
        `ReadWeightGraph.read_weights` gives them). The arrays are this object's own and the next call
        overwrites them: run the chip before feeding the next one. They are 64-byte aligned, as
        onnxruntime aligns its initializers (unaligned weights cost resnet18 about 10% per batch)."""
        for slot in self.slots:
            if slot.name not in self._buffers:
                self._buffers[slot.name] = _aligned(slot.shape)
        return {slot.name: slot.values(read_weights[slot.layer], self._buffers[slot.name]) for slot in self.slots}

    def session(self, *, threads: int | None = None, providers: Sequence[str] | None = None) -> Any:
        """The one session every chip runs in: the saved graph, optimisation off (it is optimised)."""
        import onnxruntime as ort

        opts = session_options(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(self.model, opts, providers=list(providers or ["CPUExecutionProvider"]))


def _aligned(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """An uninitialised float32 array of ``shape`` whose data starts on an ``align``-byte boundary."""
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(4 * n + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + 4 * n].view(np.float32).reshape(shape)


def pack_chips(graph: ReadWeightGraph, *, providers: Sequence[str] | None = None) -> PackedChips | None:
    """The `PackedChips` of a read-weight graph, or None where its optimised weights do not decode as a
    gather and a factor of one layer's read weight (see the module docstring); None for providers other
    than the CPU's, whose optimised graphs are not saved in this form."""
    if list(providers or ["CPUExecutionProvider"]) != ["CPUExecutionProvider"]:
        return None
    healthy = graph.healthy
    if any(w.dtype != np.float32 for w in healthy.values()):
        return None
    probes = _probe_weights(healthy)
    if probes is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rramfx-pack-") as tmp:
        try:
            models = [_optimised(graph, weights, Path(tmp) / f"probe{i}.onnx") for i, weights in enumerate(probes)]
        except Exception:  # onnxruntime could not optimise or save this graph (over 2 GB, ...): no packing
            return None
    if len({_structure(m) for m in models}) != 1:
        return None
    slots = _decode(models, healthy)
    if slots is None:
        return None
    return PackedChips(_with_weight_inputs(models[-1], slots), slots)


def _probe_weights(healthy: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]] | None:
    """Weights that spell out their position: ones (each position's factor), the index's low part, its
    high part with the layer, and last the healthy weights (which the decoded map must reproduce)."""
    n = len(healthy)
    ones, low, high = {}, {}, {}
    for k, (path, w) in enumerate(healthy.items()):
        if (w.size // _LOW + 1) * n >= _EXACT:
            return None
        i = np.arange(w.size, dtype=np.int64)
        ones[path] = np.ones(w.shape, np.float32)
        low[path] = (i % _LOW + 1).astype(np.float32).reshape(w.shape)
        high[path] = ((i // _LOW) * n + k + 1).astype(np.float32).reshape(w.shape)
    return [ones, low, high, dict(healthy)]


def _optimised(graph: ReadWeightGraph, weights: Mapping[str, np.ndarray], path: Path) -> onnx.ModelProto:
    import onnx

    graph.session(weights, threads=1, optimized_path=path)
    return onnx.load(str(path))


def _structure(model: onnx.ModelProto) -> tuple[Any, ...]:
    """Everything of an optimised graph but its initializers' values: equal across the probes, or the
    probes' weights changed what onnxruntime did."""
    g = model.graph
    return (tuple(n.SerializeToString() for n in g.node), tuple(i.SerializeToString() for i in g.input),
            tuple(o.SerializeToString() for o in g.output),
            tuple((t.name, tuple(t.dims), t.data_type) for t in g.initializer))


def _decode(models: list[onnx.ModelProto], healthy: Mapping[str, np.ndarray]) -> tuple[WeightSlot, ...] | None:
    """The weight slots of the probes' optimised graphs (ones, low, high, healthy), or None where an
    initializer moved with the probes but does not decode, or decodes to values other than the healthy
    graph's, or where none moved."""
    from onnx import numpy_helper

    layers = list(healthy)
    values = [{t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for m in models]
    slots = []
    for name, ones in values[0].items():
        low, high, want = (v[name] for v in values[1:])
        if np.array_equal(ones, low) and np.array_equal(ones, high):
            if not np.array_equal(ones, want):  # it follows the weights, but not as the probes show
                return None
            continue
        slot = _decode_slot(name, ones, low, high, layers, healthy)
        if slot is None or not np.array_equal(slot.values(healthy[slot.layer]), want):
            return None
        slots.append(slot)
    # A layer without a slot reaches no initializer: onnxruntime's graph does not depend on its weight
    # (timm's zero-initialised last BatchNorm of a block makes the fused weight 0 on every probe).
    return tuple(slots) if slots else None


def _decode_slot(name: str, ones: np.ndarray, low: np.ndarray, high: np.ndarray, layers: list[str],
                 healthy: Mapping[str, np.ndarray]) -> WeightSlot | None:
    """One optimised initializer as a gather and a factor of one layer's read weight, or None."""
    if ones.dtype != np.float32 or low.shape != ones.shape or high.shape != ones.shape:
        return None
    a, b, c = (x.reshape(-1) for x in (ones, low, high))
    live = a != 0
    every = bool(live.all())
    if not every:
        if not live.any() or np.any(b[~live]) or np.any(c[~live]):
            return None
        a, b, c = a[live], b[live], c[live]
    parts = []
    for probe in (b, c):  # value x factor / factor is the value up to a rounding far below 0.5
        ratio = probe if every and np.all(ones == 1) else probe / a
        whole = np.rint(ratio)
        if np.abs(ratio - whole).max() > 0.25 or whole.min() < 1:
            return None
        parts.append(whole.astype(np.int64) - 1)
    lo, hi = parts
    layer_of = hi % len(layers)
    if np.any(layer_of != layer_of[0]):
        return None
    layer = layers[int(layer_of[0])]
    flat = (hi // len(layers)) * _LOW + lo
    if flat.max() >= healthy[layer].size:
        return None
    index = flat if every else np.zeros(ones.size, dtype=np.int64)
    if not every:
        index[live] = flat
    factor = None if every and np.all(ones == 1) else np.ascontiguousarray(ones.reshape(-1))
    return WeightSlot(name, layer, tuple(ones.shape), index.astype(np.intp, copy=False), factor)


def _with_weight_inputs(model: onnx.ModelProto, slots: tuple[WeightSlot, ...]) -> bytes:
    """``model`` (the healthy probe's optimised graph) with each slot's initializer turned into an input."""
    from onnx import helper

    names = {s.name for s in slots}
    kept = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    declared = {i.name for i in model.graph.input}
    for slot in slots:
        if slot.name not in declared:
            model.graph.input.append(helper.make_tensor_value_info(slot.name, 1, list(slot.shape)))
    return model.SerializeToString()
