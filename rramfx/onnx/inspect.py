"""What an annotated ONNX model does where: the summary that ``rramfx inspect`` prints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rramfx.onnx import meta as M
from rramfx.onnx.plan import format_plan, make_plan

__all__ = ["inspect_onnx"]


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
        "tile": meta.get("tile"), "hardware": meta.get("hardware"), "layers": dict(layers),
        "crossbar_tiles": tiles, "nodes": dict(nodes),
        "rram_mac_share": plan.macs_per_sample.get("rram", 0) / total if total else 0.0,
        **{k: v for k, v in plan.to_dict().items() if k not in ("format", "source")},
    }
    policy = meta.get("policy") or {}
    faults = meta.get("faults") or {}
    cells = (meta.get("hardware") or {}).get("cells_per_weight", 1)
    fault_text = meta["fault_mode"]
    if faults:
        fm = {k: v for k, v in faults["fault_model"].items() if k != "kind"}
        fault_text += f" ({faults['fault_model'].get('kind')} {fm}" + (
            f", seed {faults['seed']})" if "seed" in faults else ")")
    head = [
        f"{path.name}: rramfx {meta['version']}, batch {meta.get('batch')}, fault mode {fault_text}",
        "policy: " + ", ".join(f"{k}={v}" for k, v in sorted(policy.items())),
        f"weighted layers: {layers.get('rram', 0)} rram ({tiles:,} crossbar tiles of {meta.get('tile')}, "
        f"{cells} cell{'s' if cells != 1 else ''} per weight), "
        f"{layers.get('cpu', 0)} cpu",
        f"nodes: {nodes.get('rram', 0)} rram, {nodes.get('cpu', 0)} cpu",
    ]
    return {"data": data, "text": "\n".join(head) + "\n" + format_plan(plan)}

