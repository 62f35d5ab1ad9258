"""The working copy that sensitivity and placement search measure on, and the MAC counts they weigh by.

Both searches re-place a *copy* of the trained model over and over with the toolkit's own passes
(`assign_devices` with every layer pinned by an override, then `to_crossbar`, which converts plain
layers to crossbar layers and back), so the layers a candidate puts on RRAM are the only crossbar
layers and every other layer computes exactly its fault-free function. The caller's model is never
changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx

from rramfx.data.batches import split_batch
from rramfx.errors import ArgumentError
from rramfx.graph.mac_count import count_macs
from rramfx.graph.placement_report import placement
from rramfx.graph.record import require_meta
from rramfx.passes.crossbar import to_crossbar_
from rramfx.passes.devices import assign_devices_
from rramfx.policy import Policy

__all__ = ["CACHE_BYTES", "first_inputs", "layer_macs", "mac_share", "pinned_policy", "place_", "working_copy"]

#: Bytes of test batches kept on the model's device across layers and candidates (as `monte_carlo` does).
CACHE_BYTES = 2 << 30


def _glob_escape(path: str) -> str:
    """A module path as an fnmatch pattern that matches exactly that path."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def pinned_policy(policy: Policy, placement: dict[str, str]) -> Policy:
    """``policy`` with its overrides replaced by one override per layer pinning it to ``placement``'s
    device, so that `rramfx.prepare` reproduces ``placement`` exactly whatever the rules say."""
    d = policy.to_dict()
    d["overrides"] = [(_glob_escape(path), device) for path, device in placement.items()]
    return Policy.from_dict(d)


def place_(work: fx.GraphModule, base: Policy, rram: set[str] | frozenset[str]) -> None:
    """Re-place ``work`` in place: the layers in ``rram`` become (fault-free) crossbar layers, every
    other weighted layer a plain layer, using the placement and crossbar passes themselves, so a
    candidate placement is measured on exactly the layers `rramfx.prepare` would build for it."""
    layout = {path: ("rram" if path in rram else "cpu") for path in placement(work)}
    policy = pinned_policy(base, layout)
    assign_devices_(work, policy)
    to_crossbar_(work, policy)


def working_copy(gm: fx.GraphModule) -> tuple[fx.GraphModule, Policy]:
    """A deep copy of ``gm`` in eval mode with nothing on RRAM, and the policy ``gm`` was prepared with
    (the base that `place_` pins candidates onto); ``gm`` itself is not changed."""
    base = Policy.from_dict(require_meta(gm, "policy", "prepare it with rramfx.prepare(model, policy)"))
    work = copy.deepcopy(gm).eval()
    place_(work, base, frozenset())
    return work, base


def layer_macs(gm: fx.GraphModule, x: torch.Tensor) -> dict[str, int]:
    """MACs per sample of every weighted layer in one forward pass of the batch ``x`` (a layer called
    twice counts twice, a layer never called counts 0), in placement order: the weight by which the
    search prefers layers, and the unit of the MAC shares it reports."""
    paths = list(placement(gm))
    counts = count_macs(gm, paths, (x,))
    return {path: counts[path][1] // int(x.shape[0]) for path in paths}


def first_inputs(batches: Iterable[Any]) -> torch.Tensor:
    """The inputs of the first batch of ``batches`` (what `layer_macs` runs); ValueError if there is none."""
    for batch in batches:
        return split_batch(batch)[0]
    raise ArgumentError("loader yielded no samples")


def mac_share(macs: dict[str, int], layout: dict[str, str]) -> float:
    """Fraction of all MACs (per sample) that ``layout`` puts on RRAM."""
    total = sum(macs.values())
    return sum(n for path, n in macs.items() if layout.get(path) == "rram") / total if total else 0.0
