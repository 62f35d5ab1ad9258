"""Argument checks shared by the public API, so every rate and count is validated the same way.

A bad value raises `ArgumentError` naming the argument. Settings objects checking their own fields
pass their own subclass of it (``Policy`` fields raise `PolicyError`, ``Hardware`` fields `CostError`),
so a bad rate is an `ArgumentError` wherever it is checked.
"""

from __future__ import annotations

import math
from typing import Any

from rramfx.errors import ArgumentError

__all__ = ["positive_int", "positive_number", "seed_int", "trials_and_seed", "unit_rate"]


def unit_rate(name: str, value: Any, error: type[ArgumentError] = ArgumentError, *, allow_one: bool = False) -> float:
    """``value`` as a float in [0, 1) (or [0, 1] with ``allow_one``), else ``error`` naming ``name``."""
    bounds = "[0, 1]" if allow_one else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise error(f"{name} must be a number in {bounds}, got {value!r}")
    if not (0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0):
        raise error(f"{name} must be in {bounds}, got {value}")
    return float(value)


def positive_number(name: str, value: Any, error: type[ArgumentError] = ArgumentError) -> float:
    """``value`` as a finite float > 0, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise error(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, error: type[ArgumentError] = ArgumentError) -> int:
    """``value`` as an int >= 1, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{name} must be an int >= 1, got {value!r}")
    return value


def seed_int(seed: Any) -> int:
    """``seed`` as an int >= 0 (a chip's or a run's seed), else `ArgumentError` naming ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def trials_and_seed(trials: Any, seed: Any) -> tuple[int, int]:
    """The number of chips (an int >= 1) and the seed of a Monte-Carlo run, checked the same way by the
    PyTorch and the onnxruntime evaluations; else `ArgumentError` naming the bad one."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ArgumentError(f"trials must be a positive int, got {trials!r}")
    return trials, seed_int(seed)
