"""Rules for the graph's own nodes: inputs, outputs, parameters read with get_attr, module calls, and
the fallback for operations no rule covers."""

from __future__ import annotations

from typing import Any

from torch import fx

from rramfx.channels.optables import describe
from rramfx.channels.registry import HAZARD, LAYER, NOTHING, PARAM, REWRITE, VALUE, out_shape, rule, tensor
from rramfx.channels.spaces import PIN_INPUT, PIN_OUTPUT
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["NODE_RULES", "unknown"]


@rule("placeholder", ops=("placeholder",), reads=(out_shape(required=False),))
def placeholder(a: AnalysisState, node: fx.Node, shape: tuple[int, ...] | None) -> TV | None:
    """A model input: its channels are pinned (the input never changes)."""
    if shape is None:
        return None
    return TV(shape, a.fresh(shape, node.name, (PIN_INPUT, f"model input '{node.name}'")))


def _pin_value(a: AnalysisState, v: Any, reason: str) -> None:
    if isinstance(v, TV):
        a.pin_tv(v, PIN_OUTPUT, reason)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _pin_value(a, x, reason)


@rule("output", ops=("output",), produces=NOTHING)
def output(a: AnalysisState, node: fx.Node) -> None:
    """The model's outputs are pinned (the number of outputs never changes)."""
    for n in node.all_input_nodes:
        _pin_value(a, a.val(n), f"model output (node '{n.name}')")


@rule("get_attr", ops=("get_attr",), records=(PARAM,), reads=(out_shape(required=False),))
def get_attr(a: AnalysisState, node: fx.Node, shape: tuple[int, ...] | None) -> TV | None:
    """A parameter or buffer read directly (LayerScale gammas, a functional norm's affine): its dims
    unify with whatever it is combined with, and are copied per channel when widened."""
    if shape is None:
        return None
    dims = a.fresh(shape, node.target)
    a.param(node.target, dims)
    return TV(shape, dims)


@rule("module call", ops=("call_module",), produces=VALUE, records=(LAYER, HAZARD, REWRITE + ":view"),
      reads=(tensor("x", 0), out_shape()))
def module_call(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> Any:
    """A call of a leaf module with one tensor in and one out: the module's registered rule."""
    return a.apply_module(node, node.target, a.gm.get_submodule(node.target), x, shape)


@rule("unknown operation", produces=VALUE)
def unknown(a: AnalysisState, node: fx.Node) -> Any:
    """The fallback: an operation no rule covers is a barrier."""
    return a.barrier(node, f"the analysis does not know {describe(node)}")


NODE_RULES = (placeholder, output, get_attr, module_call)
