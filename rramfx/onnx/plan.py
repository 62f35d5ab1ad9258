"""The deployment plan of an annotated ONNX graph: maximal same-device segments, their interfaces and
what crosses between devices, computed without writing anything (`rramfx.onnx.partition` writes it).

Segments come from a topological order that stays on the current device while any node of it is ready
(Kahn's algorithm, ties broken by the exported order), cut wherever the device changes. Transfers are
counted once per tensor and destination device: graph inputs start on the host (``cpu``), a tensor
moves to a device before the first segment there that reads it, and graph outputs computed on RRAM go
back to the host. Fault-code inputs (``faults="inputs"``) describe the chip, not data, and are not
counted as traffic.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rramfx.checks import string_list
from rramfx.errors import ArgumentError, OnnxError, OnnxFileError
from rramfx.onnx import meta as M
from rramfx.onnx.feed import feed_dict, session_options
from rramfx.tables import table_lines
from rramfx.tensor_checks import check_array

__all__ = [
    "FORMAT",
    "MANIFEST",
    "Plan",
    "Segment",
    "TensorSpec",
    "Transfer",
    "format_plan",
    "make_plan",
    "order_segments",
    "used_names",
]

if TYPE_CHECKING:
    import onnx

MANIFEST = "manifest.json"
FORMAT = "rramfx.partition/1"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor at a segment boundary: dtype, shape (ints, or names of symbolic dims) and its size
    per sample (batch dim excluded; None when another dim is symbolic)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]
    bytes_per_sample: int | None
    role: str = "data"


@dataclass(frozen=True)
class Segment:
    """One segment: its device, its ONNX file (relative to the plan's folder) and its interface."""

    index: int
    device: str
    file: str
    nodes: int
    macs_per_sample: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Transfer:
    """Tensors moved between devices before segment ``before_segment`` runs (None: after the last,
    the graph outputs going back to the host)."""

    before_segment: int | None
    source: str
    target: str
    tensors: tuple[str, ...]
    bytes_per_sample: int | None


@dataclass
class Plan:
    """A partitioned model: segments in run order, transfers, and the whole model's inputs/outputs."""

    out_dir: Path | None
    source: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    segments: tuple[Segment, ...]
    transfers: tuple[Transfer, ...]
    macs_per_sample: dict[str, int] = field(default_factory=dict)
    _sessions: list[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def boundary_bytes_per_sample(self) -> int | None:
        """Bytes per sample that cross between devices in one forward pass."""
        sizes = [t.bytes_per_sample for t in self.transfers]
        return None if any(s is None for s in sizes) else sum(sizes)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's content (JSON-ready): what `load` reads back."""
        return {"format": FORMAT, "source": self.source, "inputs": [asdict(t) for t in self.inputs],
                "outputs": [asdict(t) for t in self.outputs], "segments": [asdict(s) for s in self.segments],
                "transfers": [asdict(t) for t in self.transfers], "macs_per_sample": self.macs_per_sample,
                "boundary_bytes_per_sample": self.boundary_bytes_per_sample}

    @classmethod
    def load(cls, out_dir: str | Path) -> Plan:
        """Read a plan written by `partition_onnx`."""
        out_dir = Path(out_dir)
        path = out_dir / MANIFEST
        if not path.is_file():
            raise OnnxFileError(f"'{out_dir}' has no {MANIFEST}: partition a model there with rramfx.partition_onnx")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise OnnxFileError(f"'{path}' is not an rramfx partition manifest (format {data.get('format')!r})")

        def specs(items):
            return tuple(TensorSpec(**dict(t, shape=tuple(t["shape"]))) for t in items)

        segments = tuple(Segment(**dict(s, inputs=specs(s["inputs"]), outputs=specs(s["outputs"])))
                         for s in data["segments"])
        transfers = tuple(Transfer(**dict(t, tensors=tuple(t["tensors"]))) for t in data["transfers"])
        return cls(out_dir, data["source"], specs(data["inputs"]), specs(data["outputs"]), segments, transfers,
                   data["macs_per_sample"])

    def run(self, inputs: Mapping[str, Any] | Sequence[Any] | Any, providers: Sequence[str] | None = None
            ) -> list[np.ndarray]:
        """Run the segments in order in onnxruntime; the whole model's outputs, in its output order.
        ``inputs``: a feed dict, one array for a single-input model, or a sequence in input order
        (fault codes included for a ``faults="inputs"`` export)."""
        if self.out_dir is None:
            raise OnnxError("this plan was not written to a folder; use rramfx.partition_onnx(path, out_dir)")
        import onnxruntime as ort

        if providers is not None:
            providers = string_list("providers", providers)
        if self._sessions is None:
            opts = session_options()
            self._sessions = [ort.InferenceSession(str(self.out_dir / s.file), opts,
                                                   providers=list(providers or ["CPUExecutionProvider"]))
                              for s in self.segments]
        env = feed_dict([t.name for t in self.inputs], inputs)
        for t in self.inputs:
            if t.dtype != "unknown":
                env[t.name] = check_array(t.name, env[t.name], t.dtype, t.shape, ArgumentError)
        for seg, sess in zip(self.segments, self._sessions, strict=True):
            names = [t.name for t in seg.outputs]
            values = sess.run(names, {t.name: env[t.name] for t in seg.inputs})
            env.update(zip(names, values, strict=True))
        return [env[t.name] for t in self.outputs]

    def summary(self) -> str:
        """Segments per device, boundary traffic and the RRAM share of MACs, as text."""
        return format_plan(self)


# ---- planning ---------------------------------------------------------------------------------------

def _device(node: onnx.NodeProto, where: str) -> str:
    for p in node.metadata_props:
        if p.key == M.DEVICE:
            return p.value
    raise OnnxError(f"node {node.name or node.op_type} of '{where}' has no rramfx.device: export it with rramfx")


def used_names(node: onnx.NodeProto) -> list[str]:
    """Tensor names a node reads, outer-scope names used inside its subgraphs included: the edges of
    the data flow that segments, transfers and the per-chip cut of `rramfx.ort_monte_carlo` follow."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            inner = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
            names += [n for sub in g.node for n in used_names(sub) if n not in inner]
    return names


def order_segments(
    nodes: Sequence[onnx.NodeProto], devices: Sequence[str], data_inputs: frozenset[str]
) -> list[list[int]]:
    """Node indices grouped in maximal same-device runs of a device-greedy topological order.

    Nodes that read none of the ``data_inputs`` (they compute from weights, fault codes, constants) are
    left out of the greedy order and join the segment of their first reader, or the segment before it
    when they run on another device, so that a faulty weight is built where it is used."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producer[x] for x in used_names(n) if x in producer} for n in nodes]
    static = [False] * len(nodes)
    for i, n in enumerate(nodes):  # the exported order is topological
        static[i] = not any(x in data_inputs for x in used_names(n)) and all(static[j] for j in deps[i])
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [sum(not static[j] for j in d) for d in deps]
    ready: dict[str, list[int]] = {}
    for i, m in enumerate(missing):
        if m == 0 and not static[i]:
            heapq.heappush(ready.setdefault(devices[i], []), i)
    seg_devices: list[str] = []
    seg_of: dict[int, int] = {}
    current: str | None = None
    while any(ready.values()):
        if not ready.get(current):
            current = min((h[0], d) for d, h in ready.items() if h)[1]
            seg_devices.append(current)
        i = heapq.heappop(ready[current])
        seg_of[i] = len(seg_devices) - 1
        for u in users[i]:
            if static[u]:
                continue
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready.setdefault(devices[u], []), u)
    # Segment ids stay fixed; a segment put in front of the first one gets the id before it.
    seg_device = dict(enumerate(seg_devices))
    for i in reversed(range(len(nodes))):
        if not static[i]:
            continue
        readers = [seg_of[u] for u in users[i]]
        first = min(readers) if readers else max(seg_device, default=0)
        if seg_device.get(first) == devices[i]:
            seg_of[i] = first
        elif first - 1 in seg_device:  # two devices alternate: the segment before runs on this device
            seg_of[i] = first - 1
        else:  # it feeds the first segment from the other device (or there is none yet)
            seg_of[i] = first - 1 if first in seg_device else first
            seg_device[seg_of[i]] = devices[i]
    ids = sorted(seg_device)
    groups: dict[int, list[int]] = {k: [] for k in ids}
    for i in range(len(nodes)):  # within a segment the exported (topological) order is kept
        groups[seg_of[i]].append(i)
    return [groups[k] for k in ids if groups[k]]


def _spec(name: str, types: Mapping[str, onnx.TypeProto], role: str = "data") -> TensorSpec:
    from onnx import helper

    t = types.get(name)
    if t is None or not t.HasField("tensor_type"):
        return TensorSpec(name, "unknown", (), None, role)
    tt = t.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    rest = shape[1:]  # the batch dim (symbolic, or the static batch of the export) is dim 0
    size = int(np.prod(rest, dtype=np.int64)) * dtype.itemsize if all(isinstance(d, int) for d in rest) else None
    return TensorSpec(name, dtype.name, shape, size, role)


def make_plan(model: onnx.ModelProto, source: str = "model") -> tuple[Plan, list[list[int]], dict[str, onnx.TypeProto]]:
    """The partition of an annotated model, without writing anything (segment files named, not made)."""
    import onnx

    meta = M.model_meta(model, source)
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type for v in [*g.value_info, *g.input, *g.output]}
    nodes = list(model.graph.node)
    devices = [_device(n, source) for n in nodes]
    graph_inputs = [i.name for i in model.graph.input]
    code_inputs = {f"{p}{M.CODES_SUFFIX}" for p in (meta.get("faults") or {}).get("inputs", {})}
    groups = order_segments(nodes, devices, frozenset(graph_inputs) - code_inputs)
    initializers = {i.name for i in model.graph.initializer}
    graph_outputs = [o.name for o in model.graph.output]
    seg_of = {o: k for k, grp in enumerate(groups) for i in grp for o in nodes[i].output if o}
    readers: dict[str, set[int]] = {}
    for k, grp in enumerate(groups):
        for i in grp:
            for name in used_names(nodes[i]):
                readers.setdefault(name, set()).add(k)

    def role(name: str) -> str:
        return "fault_codes" if name in code_inputs else "data"

    segments, transfers = [], []
    resident: dict[str, set[str]] = {n: {"cpu"} for n in graph_inputs}
    macs = {"rram": 0, "cpu": 0}
    for k, grp in enumerate(groups):
        device = devices[grp[0]]
        produced = {o for i in grp for o in nodes[i].output if o}
        ins = list(dict.fromkeys(x for i in grp for x in used_names(nodes[i])
                                 if x not in produced and x not in initializers))
        outs = [o for i in grp for o in nodes[i].output if o and (
            o in graph_outputs or any(r > k for r in readers.get(o, ())))]
        moved = []
        for x in ins:
            where = resident.setdefault(x, {_producer_device(x, seg_of, groups, devices)})
            if device not in where and role(x) == "data":
                moved.append(x)
            where.add(device)
        if moved:
            sizes = [_spec(x, types).bytes_per_sample for x in moved]
            transfers.append(Transfer(k, "cpu" if device == "rram" else "rram", device, tuple(moved),
                                      None if None in sizes else sum(sizes)))
        seg_macs = sum(_node_macs(nodes[i]) for i in grp)
        macs[device] = macs.get(device, 0) + seg_macs
        segments.append(Segment(k, device, f"{k:02d}_{device}.onnx", len(grp), seg_macs,
                                tuple(_spec(x, types, role(x)) for x in ins), tuple(_spec(o, types) for o in outs)))
    back = [o for o in graph_outputs if o in seg_of and devices[groups[seg_of[o]][0]] != "cpu"]
    if back:
        sizes = [_spec(o, types).bytes_per_sample for o in back]
        transfers.append(Transfer(None, "rram", "cpu", tuple(back), None if None in sizes else sum(sizes)))
    plan = Plan(None, source, tuple(_spec(n, types, role(n)) for n in graph_inputs),
                tuple(_spec(n, types) for n in graph_outputs), tuple(segments), tuple(transfers), macs)
    return plan, groups, types


def _producer_device(name: str, seg_of: Mapping[str, int], groups: list[list[int]], devices: Sequence[str]) -> str:
    """The device that produces a tensor (graph inputs: the host)."""
    return devices[groups[seg_of[name]][0]] if name in seg_of else "cpu"


def _node_macs(node: onnx.NodeProto) -> int:
    for p in node.metadata_props:
        if p.key == M.OP:
            return int(json.loads(p.value).get("macs") or 0)
    return 0


def format_plan(plan: Plan) -> str:
    """Text summary of a plan: segments per device, boundary traffic, RRAM share of MACs."""
    counts = {d: sum(s.device == d for s in plan.segments) for d in ("rram", "cpu")}
    total = sum(plan.macs_per_sample.values())
    share = plan.macs_per_sample.get("rram", 0) / total if total else 0.0
    traffic = plan.boundary_bytes_per_sample
    lines = [
        f"segments: {len(plan.segments)} ({counts['rram']} rram, {counts['cpu']} cpu)",
        f"MACs per sample: {total:,} ({100 * share:.1f}% on rram)",
        f"boundary traffic per sample: {'unknown' if traffic is None else f'{traffic:,} bytes'} "
        f"in {len(plan.transfers)} transfers",
        "",
    ]
    moved_in = {t.before_segment: t for t in plan.transfers}
    rows = []
    for s in plan.segments:
        t = moved_in.get(s.index)
        b = "-" if t is None else "?" if t.bytes_per_sample is None else f"{t.bytes_per_sample:,}"
        names = ", ".join(x.name for x in s.inputs if x.role == "data")
        rows.append([s.index, s.device, s.nodes, f"{s.macs_per_sample:,}", b,
                     names[:60] + ("..." if len(names) > 60 else "")])
    lines += table_lines(["#", "device", "nodes", "MACs/sample", "bytes in/sample", "inputs"], rows, "><>>><")
    if None in moved_in:
        t = moved_in[None]
        lines.append(f"  outputs back to the host: {', '.join(t.tensors)} ({t.bytes_per_sample} bytes/sample)")
    return "\n".join(lines)
