"""Placement pass: decide for every weighted layer whether it runs on the RRAM crossbar or the host."""

from __future__ import annotations

import difflib
import fnmatch

from torch import fx, nn

from rramfx.errors import ArgumentTypeError, PolicyError
from rramfx.graph.modules import kernel_taps, weighted_layers
from rramfx.graph.record import copy_graph_module, rramfx_meta
from rramfx.policy import Policy

__all__ = ["assign_devices", "assign_devices_", "placement_for", "rule_device"]


def rule_device(layer: nn.Module, policy: Policy) -> str:
    """The kernel-size rule: convolutions with more than one kernel tap go to ``policy.conv_kxk``,
    1x1 convolutions (depthwise and grouped ones included) to ``conv_1x1``, linears to ``linear``."""
    if isinstance(layer, nn.Linear):
        return policy.linear
    return policy.conv_kxk if kernel_taps(layer) > 1 else policy.conv_1x1


def placement_for(layers: dict[str, nn.Module], policy: Policy) -> dict[str, str]:
    """Module path → "rram"/"cpu": the kernel-size rule, then the policy's overrides in order."""
    placement = {path: rule_device(layer, policy) for path, layer in layers.items()}
    for pattern, device in policy.overrides:
        matched = [p for p in placement if fnmatch.fnmatchcase(p, pattern)]
        if not matched:
            close = difflib.get_close_matches(pattern, list(placement), n=5, cutoff=0.5)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise PolicyError(
                f"Policy.overrides pattern {pattern!r} matches no weighted layer of this model.{hint} "
                "Patterns are fnmatch globs over module paths (see rramfx.placement(gm) for the names)."
            )
        for p in matched:
            placement[p] = device
    return placement


def assign_devices_(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """In-place form of `assign_devices`, for pipelines that already own their copy."""
    if not isinstance(policy, Policy):
        raise ArgumentTypeError(f"policy must be an rramfx.Policy, got {type(policy).__name__}")
    meta = rramfx_meta(gm)
    meta["placement"] = placement_for(weighted_layers(gm), policy)
    meta["policy"] = policy.to_dict()
    return gm


def assign_devices(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """Return a copy of ``gm`` whose every weighted layer is placed on "rram" or "cpu" by ``policy``.

    Read the result with `rramfx.placement` or `rramfx.summary`. An override pattern that matches
    no layer raises `PolicyError` listing close names. ``gm`` itself is not changed.
    """
    out = copy_graph_module(gm)
    return assign_devices_(out, policy)
