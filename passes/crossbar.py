"""Crossbar pass: RRAM-placed layers become crossbar layers (DropConnect in training, faults and the
1/(1-p') inference scale in evaluation); host layers stay exactly as they were."""

from __future__ import annotations

from torch import fx

from rramfx.crossbar.layers import to_crossbar_layer, to_plain_layer
from rramfx.errors import ArgumentTypeError
from rramfx.graph.record import copy_graph_module, require_meta
from rramfx.policy import Policy

__all__ = ["to_crossbar", "to_crossbar_"]


def to_crossbar_(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """In-place form of `to_crossbar`, for pipelines that already own their copy."""
    if not isinstance(policy, Policy):
        raise ArgumentTypeError(f"policy must be an rramfx.Policy, got {type(policy).__name__}")
    placement = require_meta(gm, "placement", "run rramfx.passes.assign_devices(gm, policy) first")
    for path, device in placement.items():
        layer = gm.get_submodule(path)
        if device == "rram":
            to_crossbar_layer(layer, policy.drop_rate, policy.fault_rate)
        else:
            to_plain_layer(layer)
    return gm


def to_crossbar(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """Return a copy of a placed GraphModule whose RRAM layers are crossbar layers.

    The layers keep their class (a crossbar subclass is made of it), parameters and state_dict
    keys; with ``policy.drop_rate`` they apply DropConnect in training, and ``policy.fault_rate`` is
    the p' of the 1/(1-p') scale applied once faults are injected.
    """
    out = copy_graph_module(gm)
    return to_crossbar_(out, policy)
