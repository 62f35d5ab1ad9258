"""`prepare`: the one-call path from a user's model to a GraphModule ready for RRAM training.

The passes run in a fixed order, each on the result of the one before:

1. ``replace_with_bottleneck`` (``Policy.bottleneck``) first, because it adds layers: its 1x1 expand
   and project convolutions are then ordinary 1x1 convolutions that the next passes see like any
   other.
2. ``pad_1x1_to_3x3`` (``Policy.pad_1x1``) next: it changes kernels but no channel count, so it must
   see every 1x1 convolution the final network has, the bottlenecks' included, and it must come
   before placement, where the kernel-size rule turns the padded layers into RRAM layers.
3. ``widen_channels`` (``Policy.widen``) last of the structural passes: its channel-coupling
   analysis runs on the final structure, so the bottlenecks' hidden widths and padded layers are
   widened consistently and the parameter count it reports is the deployed network's.
4. ``assign_devices`` after every structural change, since placement reads kernel sizes.
5. ``to_crossbar`` last: crossbar layers are what the placement chose, and the structural passes do
   not rewrite crossbar layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import fx, nn

from rramfx.errors import ArgumentTypeError, PlacementError, PolicyError, RramfxError
from rramfx.graph.modules import host_only_layers, weighted_layers
from rramfx.graph.tracing import trace
from rramfx.passes.bottleneck import replace_with_bottleneck_
from rramfx.passes.crossbar import to_crossbar_
from rramfx.passes.devices import assign_devices_
from rramfx.passes.pad_1x1 import pad_1x1_to_3x3_
from rramfx.passes.widen import widen_channels_
from rramfx.policy import Policy


def _as_policy(policy: Policy | Mapping[str, Any] | str | Path | None) -> Policy:
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Mapping):
        return Policy.from_dict(policy)
    if isinstance(policy, (str, Path)):
        return Policy.from_file(policy)
    raise ArgumentTypeError(f"policy must be an rramfx.Policy, a dict or a policy file path, "
                            f"got {type(policy).__name__}")


def _check_simulated(gm: fx.GraphModule, name: str) -> None:
    """Refuse a model with no layer rramfx can place (nothing to simulate); warn, naming them, about
    recurrent and attention layers, which stay on the host unfaulted (see docs/workflow.md)."""
    host = list(host_only_layers(gm))
    if host:
        warnings.warn(f"rramfx.prepare: {', '.join(host)} ({len(host)} recurrent/attention layer(s)) are not "
                      "simulated: they run on the host without DropConnect or faults; rramfx.summary lists "
                      "them as 'not simulated (host)'", stacklevel=3)
    if not weighted_layers(gm):
        raise PlacementError(f"rramfx.prepare: {name} has no Conv1d/2d/3d or Linear layer outside "
                             f"recurrent/attention layers, so nothing can go on the RRAM crossbar"
                             + (f" ({', '.join(host)} are not simulated)" if host else "")
                             + "; give a model with convolutions or linear layers")


def prepare(
    model: nn.Module,
    policy: Policy | Mapping[str, Any] | str | Path | None = None,
    example_inputs: Any = None,
    leaf_modules: Iterable[type[nn.Module]] = (),
) -> fx.GraphModule:
    """Trace a copy of ``model`` and run the passes ``policy`` asks for, in the order
    bottleneck → pad → widen → placement → crossbar layers (see the module docstring for why).

    Returns a GraphModule in the same train/eval mode as ``model``; ``model`` itself (parameters,
    buffers, modules, training flag) is left as it was. With ``example_inputs`` the traced graph is
    checked against the eager model; widening (``Policy.widen`` > 1) needs them to read tensor
    shapes, and padding uses them to leave 1x1 convolutions on 1x1 feature maps alone. Without
    structural passes the prepared model computes exactly what the traced one does in eval mode; a
    bottleneck, or a widening without ``widen_preserve_function``, changes the network on purpose.
    ``policy`` may also be a dict or a .json/.toml file path. A failing pass raises its own error
    type with the pass and the Policy field that asked for it named in the message.
    """
    policy = _as_policy(policy)
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"rramfx.prepare: model must be an nn.Module, got {type(model).__name__}")
    if policy.widen != 1.0 and example_inputs is None:
        raise PolicyError(
            f"Policy.widen={policy.widen:g} needs example_inputs in rramfx.prepare (a batch the model accepts): "
            "the widening pass runs it to read tensor shapes"
        )
    gm = trace(model, leaf_modules=leaf_modules, example_inputs=example_inputs)  # gm owns a copy
    steps = []
    if policy.bottleneck:
        steps.append(("replace_with_bottleneck", "Policy.bottleneck", lambda g: replace_with_bottleneck_(
            g, policy.bottleneck, policy.bottleneck_expand_ratio)))
    if policy.pad_1x1:
        steps.append(("pad_1x1_to_3x3", "Policy.pad_1x1", lambda g: pad_1x1_to_3x3_(
            g, policy.pad_1x1, example_inputs)))
    if policy.widen != 1.0:
        steps.append(("widen_channels", "Policy.widen", lambda g: widen_channels_(
            g, policy.widen, example_inputs, policy.widen_preserve_function, policy.widen_divisor)))
    for name, field_name, step in steps:
        try:
            step(gm)
        except RramfxError as e:
            raise type(e)(f"rramfx.prepare: {name} (asked for by {field_name}) failed: {e}") from e
    _check_simulated(gm, type(model).__name__)
    assign_devices_(gm, policy)
    to_crossbar_(gm, policy)
    gm.train(model.training)
    return gm


__all__ = ["prepare"]
