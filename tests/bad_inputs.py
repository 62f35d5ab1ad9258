"""Shared shape of the bad-input case tables and the "model unchanged" assertion (issue 13).

Every ``tests/test_bad_inputs_*.py`` file that tabulates bad inputs defines a module-level
``CASES: list[BadInput]``; ``python -m tests.count_bad_inputs`` counts them per ``kind``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["BadInput", "ModelSnapshot", "assert_model_unchanged", "snapshot_model"]


@dataclass(frozen=True)
class BadInput:
    """One bad input: ``call()`` must raise ``error`` with ``culprit`` in its message.

    kind: the class of mistake (counted per kind), e.g. "example-input", "target-list", "opset".
    name: a short id for the case (the pytest id).
    """

    kind: str
    name: str
    call: Callable[[], Any]
    error: type
    culprit: str


@dataclass(frozen=True)
class ModelSnapshot:
    """What "unchanged" means for a model: state_dict values, training flags, module names."""

    state: dict[str, torch.Tensor]
    training: dict[str, bool]
    names: frozenset[str]


def snapshot_model(model: torch.nn.Module) -> ModelSnapshot:
    """Copy a model's state_dict, per-module training flags and module names."""
    return ModelSnapshot(
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        training={n: m.training for n, m in model.named_modules()},
        names=frozenset(n for n, _ in model.named_modules()),
    )


def assert_model_unchanged(model: torch.nn.Module, before: ModelSnapshot) -> None:
    """Fail unless ``model`` still equals the snapshot: every tensor torch.equal, same flags, names."""
    after = snapshot_model(model)
    assert after.names == before.names, sorted(after.names ^ before.names)
    assert after.training == before.training
    assert after.state.keys() == before.state.keys()
    for key, value in before.state.items():
        assert torch.equal(after.state[key], value), f"{key} changed"
