"""Channel arithmetic shared by the reference models."""

from __future__ import annotations

__all__ = ["make_divisible", "scaled"]


def scaled(channels: int, width: float) -> int:
    """``channels`` × ``width``, rounded to the nearest integer and at least 1."""
    return max(1, round(channels * width))


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's rounding: the multiple of ``divisor`` nearest to ``value``, never 10% below it."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out
