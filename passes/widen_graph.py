"""Rewriting the graph of a widened model: every constant size argument that depends on a widened
channel count (view/reshape/expand targets, slice bounds, split sizes, narrow, layer_norm's shape,
group_norm's and functional convolutions' group counts), and channel shuffles, which become a
gather, as the channel analysis recorded them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from rramfx.channels import ChannelAnalysis, Layout, WideningPlan

__all__ = ["GRAPH_REWRITES", "add_buffer", "rewrite_graph", "shuffle_index"]


def _new_size(p: WideningPlan, arg: Any, layout: Layout) -> Any:
    if isinstance(arg, int) and arg != -1 and p.changed(layout):
        return p.size_of(layout)
    return arg


def _view(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, dims: list[Layout]) -> None:
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


def _getitem(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, data: tuple) -> None:
    """Slice bounds along widened dims."""
    expanded, slices = data
    if not any(p.changed(h) or p.changed(m) for _, h, m in slices):
        return
    index = list(expanded)
    for pos, head, mid in slices:
        start = p.size_of(head) if head else 0
        index[pos] = slice(start, start + p.size_of(mid), None)
    node.args = (node.args[0], tuple(index))


def _split(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, data: tuple) -> None:
    """split/chunk/tensor_split: an explicit ``split`` with the new sizes."""
    d, pieces = data
    if not any(p.changed(lay) for lay in pieces):
        return
    node.target = "split" if node.op == "call_method" else torch.split
    node.args = (node.args[0], [p.size_of(lay) for lay in pieces])
    node.kwargs = {"dim": d}


def _narrow(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, data: tuple) -> None:
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


def _layer_norm(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, lays: list[Layout]) -> None:
    if any(p.changed(lay) for lay in lays):
        old = node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
        _set_arg(node, 1, "normalized_shape", type(old)(p.size_of(lay) for lay in lays))


def _group_norm(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, glay: Layout | None) -> None:
    if glay is not None and p.changed(glay):
        _set_arg(node, 1, "num_groups", p.size_of(glay))


def _conv_groups(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, channels: Layout) -> None:
    """A functional depthwise convolution's constant group count."""
    if p.changed(channels):
        _set_arg(node, 6, "groups", p.size_of(channels))


def add_buffer(gm: fx.GraphModule, owner: str, name: str, value: torch.Tensor) -> str:
    """Register ``value`` as a buffer of the module at ``owner`` under a free name; its target."""
    module = gm.get_submodule(owner) if owner else gm
    free, k = name, 1
    while hasattr(module, free):
        free, k = f"{name}_{k}", k + 1
    module.register_buffer(free, value)
    return f"{owner}.{free}" if owner else free


def shuffle_index(p: WideningPlan, groups: int, src: Layout, dst: Layout) -> torch.Tensor:
    """For each widened output channel of a channel shuffle, the widened input channel to read: one
    holding the old input channel the shuffle sends there, each input channel used once if it can be."""
    n = p.old_size_of(src)
    per = n // groups
    positions: dict[int, list[int]] = {}
    for j, old in enumerate(p.index_map(src)[0].tolist()):
        positions.setdefault(old, []).append(j)
    used: set[int] = set()
    index = []
    for old in p.index_map(dst)[0].tolist():
        candidates = positions[(old % groups) * per + old // groups]
        pick = next((c for c in candidates if c not in used), candidates[0])
        used.add(pick)
        index.append(pick)
    return torch.tensor(index, dtype=torch.long)


def _shuffle(gm: fx.GraphModule, p: WideningPlan, node: fx.Node, data: dict[str, Any]) -> None:
    """A channel shuffle (view, transpose, view) becomes one gather from the widened input."""
    if not (p.changed(data["in"]) or p.changed(data["out"])):
        return
    index = shuffle_index(p, data["groups"], data["in"], data["out"])
    target = add_buffer(gm, "", f"widen_shuffle_{node.name}", index)
    graph = gm.graph
    with graph.inserting_before(node):
        gathered = graph.call_function(torch.index_select, (data["x"], 1, graph.get_attr(target)))
    node.replace_all_uses_with(gathered)
    chain = [node]
    while chain:
        dead = chain.pop()
        inputs = [a for a in dead.all_input_nodes if a is not data["x"]]
        if not dead.users:
            graph.erase_node(dead)
            chain.extend(a for a in inputs if a.op in ("call_method", "call_function"))


#: Graph rewrite by the kind a channel rule records (``rewrite:<kind>``).
GRAPH_REWRITES: dict[str, Callable[[fx.GraphModule, WideningPlan, fx.Node, Any], None]] = {
    "view": _view,
    "getitem": _getitem,
    "split": _split,
    "narrow": _narrow,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "conv_groups": _conv_groups,
    "shuffle": _shuffle,
}


def rewrite_graph(gm: fx.GraphModule, analysis: ChannelAnalysis, plan: WideningPlan) -> None:
    """Apply every graph rewrite the analysis recorded."""
    for node, kind, data in analysis.rewrites:
        GRAPH_REWRITES[kind](gm, plan, node, data)
