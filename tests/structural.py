"""Helpers shared by the structural-pass tests (test_pad, test_widen, test_bottleneck, test_compose)."""

from __future__ import annotations

import torch


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|: the relative output change a structural pass may cause."""
    return ((got - want).abs().max() / want.abs().max()).item()
