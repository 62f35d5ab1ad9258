"""Crossbar pass: RRAM-placed layers become crossbar layers (DropConnect in training, faults and the
1/(1-p') inference scale in evaluation); host layers stay exactly as they were."""

from __future__ import annotations

from torch import fx

from rramfx.crossbar.layers import to_crossbar_layer, to_plain_layer
from rramfx.crossbar.trainfaults import dropconnect_rate, layer_train_faults, resolve_train_faults
from rramfx.errors import ArgumentTypeError
from rramfx.graph.record import copy_graph_module, require_meta
from rramfx.policy import Policy

__all__ = ["to_crossbar", "to_crossbar_"]


def to_crossbar_(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """In-place form of `to_crossbar`, for pipelines that already own their copy."""
    if not isinstance(policy, Policy):
        raise ArgumentTypeError(f"policy must be an rramfx.Policy, got {type(policy).__name__}")
    placement = require_meta(gm, "placement", "run rramfx.passes.assign_devices(gm, policy) first")
    train_faults = resolve_train_faults(policy.train_faults)
    drop_rate = dropconnect_rate(train_faults)  # DropConnect in disguise takes DropConnect's own path
    if drop_rate is not None:
        train_faults = None
    else:
        drop_rate = policy.drop_rate
    for path, device in placement.items():
        layer = gm.get_submodule(path)
        if device == "rram":
            draw = None if train_faults is None else layer_train_faults(layer, train_faults)
            to_crossbar_layer(layer, drop_rate, policy.fault_rate, draw)
        else:
            to_plain_layer(layer)
    return gm


def to_crossbar(gm: fx.GraphModule, policy: Policy) -> fx.GraphModule:
    """Return a copy of a placed GraphModule whose RRAM layers are crossbar layers.

    The layers keep their class (a crossbar subclass is made of it), parameters and state_dict
    keys; with ``policy.drop_rate`` they apply DropConnect in training (with ``policy.train_faults``
    a fault pattern drawn per step instead, `rramfx.crossbar.trainfaults`), and ``policy.fault_rate`` is
    the p' of the 1/(1-p') scale applied once faults are injected.
    """
    out = copy_graph_module(gm)
    return to_crossbar_(out, policy)
