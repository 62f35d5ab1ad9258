"""Deployment partition of an annotated ONNX graph: the segments of its `rramfx.onnx.plan.Plan`
written as standalone ONNX models with a manifest, and run in order in onnxruntime.

What the segments are and what crosses between them is decided by `rramfx.onnx.plan.make_plan`; this
module writes them (``NN_<device>.onnx`` and ``manifest.json``) and chains them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rramfx.checks import writable_folder
from rramfx.errors import OnnxError, OnnxFileError
from rramfx.files import sha256_hex, write_atomic
from rramfx.onnx import meta as M
from rramfx.onnx.plan import MANIFEST, Plan, Segment, TensorSpec, make_plan, used_names

__all__ = ["check_partition", "partition_onnx", "run_partitioned"]

if TYPE_CHECKING:
    import onnx


def partition_onnx(path: str | Path, out_dir: str | Path) -> Plan:
    """Split the annotated model at ``path`` into maximal same-device segments saved in ``out_dir``
    (``NN_<device>.onnx``, each checked with onnx.checker) with a ``manifest.json``; returns the `Plan`.
    An ``out_dir`` that cannot be created or written is an `ArgumentError` before the model is read."""
    import onnx

    out_dir = writable_folder("partition_onnx out_dir", out_dir)
    path = Path(path)
    model = M.load_annotated(path)
    plan, groups, types = make_plan(model, str(path))
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_old_segments(out_dir)
    for seg, grp in zip(plan.segments, groups, strict=True):
        sub = _segment_model(model, seg, grp, types)
        try:
            onnx.checker.check_model(sub, full_check=True)
        except Exception as e:  # pragma: no cover - a bug of the partitioner
            raise OnnxError(f"segment {seg.index} ({seg.device}) of '{path}' fails onnx.checker: {e}") from e
        onnx.save(sub, str(out_dir / seg.file))
    plan.out_dir = out_dir
    manifest = plan.to_dict()
    manifest["sha256"] = {seg.file: sha256_hex((out_dir / seg.file).read_bytes()) for seg in plan.segments}
    write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return plan


def _remove_old_segments(out_dir: Path) -> None:
    """Delete the segment files of an earlier partition into ``out_dir`` (``NN_rram.onnx``, ``NN_cpu.onnx``)."""
    for old in out_dir.glob("[0-9][0-9]_*.onnx"):
        if old.stem.split("_", 1)[1] in ("rram", "cpu"):
            old.unlink()


def _segment_model(model: onnx.ModelProto, seg: Segment, group: list[int],
                   types: Mapping[str, onnx.TypeProto]) -> onnx.ModelProto:
    """Segment ``seg`` (the nodes ``group`` of ``model``) as a standalone model: its nodes, the
    initializers they read, typed inputs and outputs, and the model's metadata plus the segment's."""
    from onnx import helper

    nodes = [model.graph.node[i] for i in group]
    inits = {i.name: i for i in model.graph.initializer}
    used = {x for n in nodes for x in used_names(n)}
    produced = {o for n in nodes for o in n.output}
    outputs = {t.name for t in seg.outputs}
    graph = helper.make_graph(
        nodes, f"{model.graph.name or 'model'}_segment{seg.index:02d}_{seg.device}",
        [_value_info(t, types) for t in seg.inputs], [_value_info(t, types) for t in seg.outputs],
        initializer=[inits[x] for x in sorted(used) if x in inits],
        value_info=[helper.make_value_info(x, types[x]) for x in sorted(produced) if x in types and x not in outputs],
    )
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                            producer_name="rramfx.partition_onnx")
    sub.functions.extend(model.functions)
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(sub, {**props, "rramfx.segment": str(seg.index), "rramfx.segment_device": seg.device})
    return sub


def _value_info(spec: TensorSpec, types: Mapping[str, onnx.TypeProto]) -> onnx.ValueInfoProto:
    from onnx import helper

    if spec.name not in types:
        raise OnnxError(f"no type known for boundary tensor '{spec.name}'; run onnx shape inference on the model")
    return helper.make_value_info(spec.name, types[spec.name])


def run_partitioned(out_dir: str | Path, inputs: Any, providers: Sequence[str] | None = None) -> list[np.ndarray]:
    """Run a partition written by `partition_onnx` on ``inputs``: the whole model's outputs."""
    check_partition(out_dir)
    try:
        plan = Plan.load(out_dir)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise OnnxFileError(f"'{Path(out_dir) / MANIFEST}' is malformed ({type(e).__name__}: {e}); "
                            "partition the model again") from None
    return plan.run(inputs, providers)


def check_partition(out_dir: str | Path) -> None:
    """Check the partition in ``out_dir`` before running it: its manifest is JSON naming its segments,
    and each segment file is there and matches the sha256 the manifest records (manifests written
    before checksums are only checked for presence). Raises `OnnxFileError` naming the file."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise OnnxFileError(f"'{out_dir}' has no {MANIFEST}: partition a model there with rramfx.partition_onnx")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        files = [str(seg["file"]) for seg in data["segments"]]
        sums = data.get("sha256", {})
        sums = {**sums}  # a TypeError when the manifest's sha256 is not a dict
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise OnnxFileError(f"'{path}' is not a readable partition manifest ({type(e).__name__}: {e}); "
                            "partition the model again") from None
    for name in files:
        seg = Path(out_dir) / name
        if not seg.is_file():
            raise OnnxFileError(f"segment '{seg}' named in '{path}' is missing; partition the model again")
        if name in sums and sha256_hex(seg.read_bytes()) != sums[name]:
            raise OnnxFileError(f"segment '{seg}' does not match the sha256 in '{path}' (changed or truncated "
                                "after partitioning); partition the model again")
