"""`prepare`: the one-call path from a user's model to a GraphModule ready for RRAM training."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import fx, nn

from .errors import PolicyError
from .passes.assign_devices import assign_devices_
from .passes.to_crossbar import to_crossbar_
from .policy import Policy
from .tracing import trace


def _as_policy(policy: Policy | Mapping[str, Any] | str | Path | None) -> Policy:
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Mapping):
        return Policy.from_dict(policy)
    if isinstance(policy, (str, Path)):
        return Policy.from_file(policy)
    raise PolicyError(f"policy must be an rramfx.Policy, a dict or a policy file path, got {type(policy).__name__}")


def prepare(
    model: nn.Module,
    policy: Policy | Mapping[str, Any] | str | Path | None = None,
    example_inputs: Any = None,
    leaf_modules: Iterable[type[nn.Module]] = (),
) -> fx.GraphModule:
    """Trace a copy of ``model`` and run the passes ``policy`` asks for: placement, then crossbar layers.

    Returns a GraphModule in the same train/eval mode as ``model``; ``model`` itself (parameters,
    buffers, modules, training flag) is left as it was. With ``example_inputs`` the traced graph is
    checked against the eager model. ``policy`` may also be a dict or a .json/.toml file path.
    """
    policy = _as_policy(policy)
    if not isinstance(model, nn.Module):
        raise TypeError(f"rramfx.prepare expects an nn.Module, got {type(model).__name__}")
    gm = trace(model, leaf_modules=leaf_modules, example_inputs=example_inputs)  # gm owns a copy
    assign_devices_(gm, policy)
    to_crossbar_(gm, policy)
    gm.train(model.training)
    return gm


__all__ = ["prepare"]
