"""Remedies: how a function-preserving widening keeps exact the operations that duplicated channels
would change (the hazards of `rramfx.channels` that carry a remedy).

- ``weights``: a LayerNorm, a one-group GroupNorm or a mean over unevenly copied channels gets
  statistics weights of 1 / copies (`rramfx.passes.widen_ops`).
- ``gather``: a convolution that slides along a channel axis (ECA attention's 1-D convolution) runs
  on the original channels, gathered from the widened tensor in their old order, and each copy takes
  its source's result; the convolution's neighbours are those of the original model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from rramfx.channels import ChannelAnalysis, Layout, WideningPlan
from rramfx.graph.modules import set_submodule
from rramfx.passes.widen_graph import add_buffer
from rramfx.passes.widen_ops import (
    WeightedLayerNorm,
    weighted_group_norm,
    weighted_layer_norm,
    weighted_normalize,
    weighted_reduce,
    weighted_softmax,
)

__all__ = ["REMEDIES", "apply_remedies", "statistics_weight"]


def statistics_weight(plan: WideningPlan, layouts: list[Layout], normalised: bool = True) -> torch.Tensor:
    """Weights over the widened dims of ``layouts`` (outer product, one dim each): every element
    1 / (copies of its source), divided by the old number of elements when ``normalised`` (each dim
    then sums to one)."""
    w = torch.ones((), dtype=torch.float64)
    for lay in layouts:
        _, counts = plan.index_map(lay)
        w = w[..., None] * (1.0 / counts.double() / (max(plan.old_size_of(lay), 1) if normalised else 1))
    return w.float()


def _broadcast_weight(plan: WideningPlan, dims: dict[int, Layout], ndim: int, normalised: bool) -> torch.Tensor:
    """`statistics_weight` over the widened ones of ``dims``, shaped to broadcast against a tensor of
    rank ``ndim`` (1 in every other dim: dims that keep their size stay plain)."""
    shape = [1] * ndim
    lays = []
    for d, lay in sorted(dims.items()):
        if plan.changed(lay):
            shape[d] = plan.size_of(lay)
            lays.append(lay)
    return statistics_weight(plan, lays, normalised).reshape(shape)


def _owner(node: fx.Node) -> str:
    """The module path of the parameters a functional node reads (its first get_attr argument)."""
    for arg in node.all_input_nodes:
        if arg.op == "get_attr":
            return arg.target.rpartition(".")[0]
    return ""


def _get_attr(gm: fx.GraphModule, node: fx.Node, target: str) -> fx.Node:
    with gm.graph.inserting_before(node):
        return gm.graph.get_attr(target)


def _ln_module(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    ln = gm.get_submodule(data["path"])
    set_submodule(gm, data["path"], WeightedLayerNorm.from_layer_norm(ln, statistics_weight(plan, data["dims"])))


def _layer_norm(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    node = data["node"]
    stat = _get_attr(gm, node, add_buffer(gm, _owner(node), "stat_weight", statistics_weight(plan, data["dims"])))
    node.target = weighted_layer_norm
    node.kwargs = {**node.kwargs, "stat_weight": stat}


def _group_norm(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    node = data["node"]
    stat = _get_attr(gm, node, add_buffer(gm, _owner(node), "stat_weight", statistics_weight(plan, data["dims"])))
    node.target = weighted_group_norm
    node.kwargs = {**node.kwargs, "stat_weight": stat}


def _reduce(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    """``x.mean/sum/norm(dims)`` → ``weighted_reduce(x, op, dims, keepdim, stat_weight, p)``."""
    node, op = data["node"], data["op"]
    weight = _broadcast_weight(plan, data["dims"], data["ndim"], normalised=op == "mean")
    stat = _get_attr(gm, node, add_buffer(gm, "", f"stat_weight_{node.name}", weight))
    node.op, node.target = "call_function", weighted_reduce
    node.args = (node.args[0], op, data["reduced"], data["keepdim"])
    node.kwargs = {"stat_weight": stat, **({"p": float(data["p"])} if op == "norm" else {})}


def _softmax(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    node = data["node"]
    weight = _broadcast_weight(plan, {data["dim"]: data["layout"]}, data["ndim"], normalised=False)
    stat = _get_attr(gm, node, add_buffer(gm, "", f"stat_weight_{node.name}", weight))
    log = "log" in (node.target if node.op == "call_method" else node.target.__name__)
    node.op, node.target = "call_function", weighted_softmax
    node.args, node.kwargs = (node.args[0], data["dim"]), {"stat_weight": stat, "log": log}


def _normalize(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    node = data["node"]
    weight = _broadcast_weight(plan, {data["dim"]: data["layout"]}, data["ndim"], normalised=False)
    stat = _get_attr(gm, node, add_buffer(gm, "", f"stat_weight_{node.name}", weight))
    node.target = weighted_normalize
    node.kwargs = {**node.kwargs, "stat_weight": stat}


def _matmul(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    """``x @ y`` → ``(x * w) @ y``: each copy of a contracted channel counts 1 / copies."""
    node = data["node"]
    weight = statistics_weight(plan, [data["layout"]], normalised=False)
    stat = _get_attr(gm, node, add_buffer(gm, "", f"stat_weight_{node.name}", weight))
    with gm.graph.inserting_before(node):
        scaled = gm.graph.call_function(torch.mul, (node.args[0], stat))
    node.args = (scaled, *node.args[1:])


def _gather(gm: fx.GraphModule, plan: WideningPlan, data: dict[str, Any]) -> None:
    """``conv(x)`` → ``conv(x.index_select(d, originals)).index_select(d, sources)``."""
    node, d, lay = data["node"], data["dim"], data["layout"]
    originals, offset = [], 0
    for s, inner in plan.S.expand(lay):
        originals.append(offset + torch.arange(plan.S.size[s] * inner))
        offset += plan.new_size[s] * inner
    sources, _ = plan.index_map(lay)
    owner = data["path"].rpartition(".")[0]
    before = add_buffer(gm, owner, "widen_originals", torch.cat(originals))
    after = add_buffer(gm, owner, "widen_sources", sources)
    graph = gm.graph
    with graph.inserting_before(node):
        gathered = graph.call_function(torch.index_select, (node.args[0], d, graph.get_attr(before)))
    node.args = (gathered, *node.args[1:])
    with graph.inserting_after(node):
        index = graph.get_attr(after)
    with graph.inserting_after(index):
        spread = graph.call_function(torch.index_select, (node, d, index))
    node.replace_all_uses_with(spread, delete_user_cb=lambda user: user is not spread)


#: Remedy by the ``kind`` in a hazard's data.
REMEDIES: dict[str, Callable[[fx.GraphModule, WideningPlan, dict[str, Any]], None]] = {
    "ln_module": _ln_module,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "reduce": _reduce,
    "softmax": _softmax,
    "normalize": _normalize,
    "matmul": _matmul,
    "gather": _gather,
}


def apply_remedies(gm: fx.GraphModule, analysis: ChannelAnalysis, plan: WideningPlan) -> list[str]:
    """Apply the remedy of every hazard the plan leaves to the pass (once per node); returns what
    was done, one line per node."""
    done: dict[int, str] = {}
    for h in plan.remedied:
        if id(h.data) not in done:
            REMEDIES[h.data["kind"]](gm, plan, h.data)
            done[id(h.data)] = f"node '{h.node}': {h.what} ({h.remedy})"
    return list(done.values())
