"""What an annotated ONNX model does where: the summary that ``rramfx inspect`` prints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rramfx.onnx import meta as M
from rramfx.onnx.partition import Plan, make_plan


def inspect_onnx(path: str | Path) -> dict[str, Any]:
    """Summary of an annotated model: ``{"data": plain data, "text": the same as printable text}`` with
    the policy, fault mode, layers and crossbar tiles per device, nodes per device, the segments a
    partition would make, the bytes crossing devices per sample and the RRAM share of MACs."""
    path = Path(path)
    model = M.load_annotated(path)
    meta = M.model_meta(model, path)
    plan, _, _ = make_plan(model, str(path))
    nodes = Counter(M.node_meta(n).get("device", "?") for n in model.graph.node)
    layers: Counter[str] = Counter(meta["placement"].values())
    tiles = 0
    for n in model.graph.node:
        crossbar = M.node_meta(n).get("crossbar")
        if crossbar:
            tiles += int(json.loads(crossbar)["tiles"])
    total = sum(plan.macs_per_sample.values())
    data = {
        "file": str(path), "version": meta["version"], "fault_mode": meta["fault_mode"],
        "faults": meta.get("faults"), "policy": meta.get("policy"), "batch": meta.get("batch"),
        "tile": meta.get("tile"), "layers": dict(layers), "crossbar_tiles": tiles, "nodes": dict(nodes),
        "rram_mac_share": plan.macs_per_sample.get("rram", 0) / total if total else 0.0,
        **{k: v for k, v in plan.to_dict().items() if k not in ("format", "source")},
    }
    policy = meta.get("policy") or {}
    faults = meta.get("faults") or {}
    fault_text = meta["fault_mode"]
    if faults:
        fm = {k: v for k, v in faults["fault_model"].items() if k != "kind"}
        fault_text += f" ({faults['fault_model'].get('kind')} {fm}" + (
            f", seed {faults['seed']})" if "seed" in faults else ")")
    head = [
        f"{path.name}: rramfx {meta['version']}, batch {meta.get('batch')}, fault mode {fault_text}",
        "policy: " + ", ".join(f"{k}={v}" for k, v in sorted(policy.items())),
        f"weighted layers: {layers.get('rram', 0)} rram ({tiles:,} crossbar tiles of {meta.get('tile')}), "
        f"{layers.get('cpu', 0)} cpu",
        f"nodes: {nodes.get('rram', 0)} rram, {nodes.get('cpu', 0)} cpu",
    ]
    return {"data": data, "text": "\n".join(head) + "\n" + format_plan(plan)}


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
        f"{'#':>3}  {'device':6}  {'nodes':>5}  {'MACs/sample':>14}  {'bytes in/sample':>15}  inputs",
    ]
    moved_in = {t.before_segment: t for t in plan.transfers}
    for s in plan.segments:
        t = moved_in.get(s.index)
        b = "-" if t is None else "?" if t.bytes_per_sample is None else f"{t.bytes_per_sample:,}"
        names = ", ".join(x.name for x in s.inputs if x.role == "data")
        lines.append(f"{s.index:>3}  {s.device:6}  {s.nodes:>5}  {s.macs_per_sample:>14,}  {b:>15}  "
                     f"{names[:60] + ('...' if len(names) > 60 else '')}")
    if None in moved_in:
        t = moved_in[None]
        lines.append(f"  outputs back to the host: {', '.join(t.tensors)} ({t.bytes_per_sample} bytes/sample)")
    return "\n".join(lines)
