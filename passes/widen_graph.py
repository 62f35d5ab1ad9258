"""Rewriting the graph of a widened model: every constant size argument that depends on a widened
channel count (view/reshape targets, slice bounds, split sizes, narrow, layer_norm's shape,
group_norm's group count), as the channel analysis recorded them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from rramfx.channels import ChannelAnalysis, Layout, WideningPlan

__all__ = ["GRAPH_REWRITES", "rewrite_graph"]


def _new_size(p: WideningPlan, arg: Any, layout: Layout) -> Any:
    if isinstance(arg, int) and arg != -1 and p.changed(layout):
        return p.size_of(layout)
    return arg


def _view(p: WideningPlan, node: fx.Node, dims: list[Layout]) -> None:
    """view/reshape/unflatten: the target sizes."""
    if not any(p.changed(lay) for lay in dims):
        return
    args = list(node.args)
    if node.target == "unflatten" or getattr(node.target, "__name__", "") == "unflatten":
        d = args[1] % len(dims)
        args[2] = type(args[2])(_new_size(p, s, dims[d + k]) for k, s in enumerate(args[2]))
    elif "shape" in node.kwargs or "size" in node.kwargs:
        key = "shape" if "shape" in node.kwargs else "size"
        sizes = node.kwargs[key]
        new = type(sizes)(_new_size(p, s, lay) for s, lay in zip(sizes, dims, strict=True))
        node.kwargs = {**node.kwargs, key: new}
        return
    elif len(args) == 2 and isinstance(args[1], (list, tuple)):
        args[1] = type(args[1])(_new_size(p, s, lay) for s, lay in zip(args[1], dims, strict=True))
    else:
        args[1:] = [_new_size(p, s, lay) for s, lay in zip(args[1:], dims, strict=True)]
    node.args = tuple(args)


def _getitem(p: WideningPlan, node: fx.Node, data: tuple) -> None:
    """Slice bounds along widened dims."""
    expanded, slices = data
    if not any(p.changed(h) or p.changed(m) for _, h, m in slices):
        return
    index = list(expanded)
    for pos, head, mid in slices:
        start = p.size_of(head) if head else 0
        index[pos] = slice(start, start + p.size_of(mid), None)
    node.args = (node.args[0], tuple(index))


def _split(p: WideningPlan, node: fx.Node, data: tuple) -> None:
    """split/chunk/tensor_split: an explicit ``split`` with the new sizes."""
    d, pieces = data
    if not any(p.changed(lay) for lay in pieces):
        return
    node.target = "split" if node.op == "call_method" else torch.split
    node.args = (node.args[0], [p.size_of(lay) for lay in pieces])
    node.kwargs = {"dim": d}


def _narrow(p: WideningPlan, node: fx.Node, data: tuple) -> None:
    d, head, mid = data
    if p.changed(head) or p.changed(mid):
        start = p.size_of(head) if head else 0
        node.args = (node.args[0], d, start, p.size_of(mid))
        node.kwargs = {}


def _set_arg(node: fx.Node, pos: int, key: str, value: Any) -> None:
    """Set an argument given by position or keyword, wherever the node has it."""
    if len(node.args) > pos:
        args = list(node.args)
        args[pos] = value
        node.args = tuple(args)
    else:
        node.kwargs = {**node.kwargs, key: value}


def _layer_norm(p: WideningPlan, node: fx.Node, lays: list[Layout]) -> None:
    if any(p.changed(lay) for lay in lays):
        old = node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
        _set_arg(node, 1, "normalized_shape", type(old)(p.size_of(lay) for lay in lays))


def _group_norm(p: WideningPlan, node: fx.Node, glay: Layout | None) -> None:
    if glay is not None and p.changed(glay):
        _set_arg(node, 1, "num_groups", p.size_of(glay))


#: Graph rewrite by the kind a channel rule records (``rewrite:<kind>``).
GRAPH_REWRITES: dict[str, Callable[[WideningPlan, fx.Node, Any], None]] = {
    "view": _view,
    "getitem": _getitem,
    "split": _split,
    "narrow": _narrow,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
}


def rewrite_graph(analysis: ChannelAnalysis, plan: WideningPlan) -> None:
    """Apply every graph rewrite the analysis recorded."""
    for node, kind, data in analysis.rewrites:
        GRAPH_REWRITES[kind](plan, node, data)
