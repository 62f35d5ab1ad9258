"""Rules for elementwise operations: activations, arithmetic, ``expand_as``."""

from __future__ import annotations

from typing import Any

from torch import fx

from rramfx.channels.optables import BINARY_FUNCTIONS, BINARY_METHODS, ELEMENTWISE_FUNCTIONS, ELEMENTWISE_METHODS
from rramfx.channels.registry import operands, out_shape, rule, value
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["POINTWISE_RULES"]


@rule("elementwise", functions=tuple(ELEMENTWISE_FUNCTIONS), methods=tuple(ELEMENTWISE_METHODS),
      reads=(value("x", 0, "input"), out_shape()))
def elementwise(a: AnalysisState, node: fx.Node, x: Any, shape: tuple[int, ...]) -> TV:
    """One tensor in, the same layout out (the other arguments are constants)."""
    return a.broadcast(node, [x], shape)


@rule("arithmetic", functions=tuple(BINARY_FUNCTIONS), methods=tuple(BINARY_METHODS),
      reads=(operands("operands"), out_shape()))
def arithmetic(a: AnalysisState, node: fx.Node, operands: list[Any], shape: tuple[int, ...]) -> TV:
    """Numpy broadcasting: equal dims unify, a size-1 dim broadcast against a larger one is pinned."""
    return a.broadcast(node, operands, shape)


@rule("expand_as", methods=("expand_as",), reads=(value("x", 0), value("other", 1), out_shape()))
def expand_as(a: AnalysisState, node: fx.Node, x: Any, other: Any, shape: tuple[int, ...]) -> TV:
    """Broadcast ``x`` to ``other``'s shape."""
    return a.broadcast(node, [x, other], shape)


POINTWISE_RULES = (elementwise, arithmetic, expand_as)
