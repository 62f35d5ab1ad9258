"""Rules for view, reshape, flatten, unflatten, squeeze and unsqueeze."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import fx

from rramfx.channels.registry import REWRITE, out_shape, rule, tensor
from rramfx.channels.spaces import PIN_BROADCAST, PIN_UNSUPPORTED, Layout, Mismatch
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV, Barrier
from rramfx.graph.shapes import tensor_meta

__all__ = ["RESHAPE_RULES", "reshape", "shuffle_source"]


def _all_pinned(a: AnalysisState, lay: Layout) -> bool:
    return all(a.S.find(s) in a.S.pinned for s, _ in a.S.expand(lay))


def _groups(x_shape: tuple[int, ...], shape: tuple[int, ...]) -> list[tuple[list, list]] | None:
    """Input and output dims (size 1 left out) matched into consecutive groups of equal product."""
    ins = [(k, n) for k, n in enumerate(x_shape) if n != 1]
    outs = [(k, n) for k, n in enumerate(shape) if n != 1]
    groups = []
    i = j = 0
    while i < len(ins) or j < len(outs):
        gi, go = [ins[i]] if i < len(ins) else [], [outs[j]] if j < len(outs) else []
        i, j = i + len(gi), j + len(go)
        pi, po = math.prod(n for _, n in gi), math.prod(n for _, n in go)
        while pi != po:
            if pi < po and i < len(ins):
                gi.append(ins[i])
                pi *= ins[i][1]
                i += 1
            elif po < pi and j < len(outs):
                go.append(outs[j])
                po *= outs[j][1]
                j += 1
            else:
                return None
        groups.append((gi, go))
    return groups


def reshape(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...], rewrite_node: fx.Node | None) -> Any:
    """Match input and output dims into groups of equal product; within a group at most one
    dimension may carry widenable channels (the others are sizes such as H, W or a number of
    paths, which stay as they are). ``rewrite_node``: the node whose size arguments to rewrite."""
    for k, n in enumerate(x.shape):
        if n == 1:
            a.S.pin_layout(x.dims[k], PIN_BROADCAST, f"size-1 dimension reshaped at node '{node.name}'")
    groups = _groups(x.shape, shape)
    if groups is None:
        return a.barrier(node, "a reshape the analysis cannot match up")
    dims: list[Layout | None] = [None] * len(shape)
    for gi, go in groups:
        _reshape_group(a, node, x, gi, go, dims)
    for k, n in enumerate(shape):
        if dims[k] is None:
            dims[k] = a.fixed_dims([n], node, "size-1 dimension")[0]
    if rewrite_node is not None:
        a.rewrite(rewrite_node, "view", list(dims))
    return TV(shape, dims)


def _merge(a: AnalysisState, node: fx.Node, gi: list, in_lays: list[Layout], free: list[int]) -> Layout:
    """Several dims into one: the one channel-carrying dim, in blocks of the dims after it, repeated
    for the dims before it."""
    if len(free) > 1:
        a.barriers.append(Barrier(node.name, "a reshape merges two channel dimensions",
                                  [in_lays[idx] for idx in free]))
        for idx in free:
            a.S.pin_layout(in_lays[idx], PIN_UNSUPPORTED,
                           f"merged with another channel dimension at node '{node.name}'")
    c = free[0]
    pre = math.prod(n for _, n in gi[:c])
    post = math.prod(n for _, n in gi[c + 1:])
    return tuple((s, inner * post) for s, inner in a.S.expand(in_lays[c])) * pre


def _split_dim(a: AnalysisState, node: fx.Node, lay: Layout, go: list, dims: list) -> bool:
    """One dim into several: the channels go on the output dim that fits, tried from the last."""
    for c in reversed(range(len(go))):
        pre = math.prod(n for _, n in go[:c])
        post = math.prod(n for _, n in go[c + 1:])
        trial = copy.deepcopy(a.S)
        y = trial.new(go[c][1], "trial")
        try:
            trial.unify(lay, ((y, post),) * pre)
        except Mismatch:
            continue
        y = a.S.new(go[c][1], f"{node.name}.dim{go[c][0]}")
        a.unify(lay, ((y, post),) * pre)
        for k, (od, n) in enumerate(go):
            dims[od] = ((y, 1),) if k == c else a.fixed_dims([n], node, "reshaped dimension")[0]
        return True
    return False


def _reshape_group(a: AnalysisState, node: fx.Node, x: TV, gi: list, go: list, dims: list) -> None:
    in_lays = [x.dims[k] for k, _ in gi]
    free = [idx for idx, lay in enumerate(in_lays) if not _all_pinned(a, lay)]
    if len(gi) == 1 and len(go) == 1:
        dims[go[0][0]] = in_lays[0]
        return
    if free and len(go) == 1:
        dims[go[0][0]] = _merge(a, node, gi, in_lays, free)
        return
    if free and len(gi) == 1 and _split_dim(a, node, in_lays[0], go, dims):
        return
    if free:
        a.barriers.append(Barrier(node.name, "a reshape that regroups channel dimensions", list(in_lays)))
        for lay in in_lays:
            a.S.pin_layout(lay, PIN_UNSUPPORTED, f"regrouped at node '{node.name}'")
    for k, n in go:
        dims[k] = a.fixed_dims([n], node, "reshaped dimension")[0]


def _is_call(node: Any, names: tuple[str, ...]) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_method":
        return node.target in names
    return node.op == "call_function" and getattr(node.target, "__name__", "") in names


def shuffle_source(node: fx.Node) -> tuple[fx.Node, int] | None:
    """``(x, g)`` when ``node`` ends a channel shuffle ``x.view(B, g, C // g, *S).transpose(1, 2)
    [.contiguous()].view(B, C, *S)`` (ShuffleNet), else None."""
    src = node.args[0]
    if _is_call(src, ("contiguous",)):
        src = src.args[0]
    if not _is_call(src, ("transpose",)) or {int(d) for d in src.args[1:3]} != {1, 2}:
        return None
    split = src.args[0]
    if not _is_call(split, ("view", "reshape")) or not isinstance(split.args[0], fx.Node):
        return None
    x = split.args[0]
    shapes = [tuple(m.shape) if m is not None else None for m in (tensor_meta(x), tensor_meta(split),
                                                                     tensor_meta(node))]
    if None in shapes or shapes[0] != shapes[2] or len(shapes[1]) != len(shapes[0]) + 1:
        return None
    (b, c, *rest), (b2, g, per, *rest2) = shapes[0], shapes[1]
    if (b, rest) != (b2, rest2) or g * per != c or g == 1 or per == 1:
        return None
    return x, int(g)


def _shuffle(a: AnalysisState, node: fx.Node, source: fx.Node, x: TV, g: int, shape: tuple[int, ...]) -> TV:
    """A channel shuffle permutes channels across the spaces of its input. Its output gets channels of
    its own, which the widening fills from the widened input by a gather that keeps every old
    channel's value at its shuffled position and gives each copy its source's value."""
    out = a.fresh([shape[1]], node.name, producer=f"{node.name} (channel shuffle)")[0]
    a.produced(out)
    a.rewrite(node, "shuffle", {"x": source, "groups": g, "in": x.dims[1], "out": out})
    return TV(shape, [x.dims[0], out, *x.dims[2:]])


@rule("view", functions=(torch.reshape,), methods=("view", "reshape"), records=(REWRITE + ":view",
                                                                               REWRITE + ":shuffle"),
      reads=(tensor("x", 0), out_shape()))
def view(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> Any:
    """See `reshape`; the target sizes are rewritten. The view that ends a channel shuffle is a
    permutation of channels instead (see `shuffle_source`)."""
    shuffle = shuffle_source(node)
    source = a.tv(shuffle[0]) if shuffle is not None else None
    if shuffle is not None and source is not None:
        return _shuffle(a, node, shuffle[0], source, shuffle[1], shape)
    return reshape(a, node, x, shape, node)


@rule("flatten", functions=(torch.flatten, torch.squeeze, torch.unsqueeze),
      methods=("flatten", "squeeze", "unsqueeze"), records=(REWRITE + ":view",),
      reads=(tensor("x", 0), out_shape()))
def flatten(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> Any:
    """See `reshape`; these take dims, not sizes, so nothing is rewritten."""
    return reshape(a, node, x, shape, None)


@rule("unflatten", functions=(torch.unflatten,), methods=("unflatten",), records=(REWRITE + ":view",),
      reads=(tensor("x", 0), out_shape()))
def unflatten(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> Any:
    """See `reshape`; the sizes of the unflattened dim are rewritten."""
    return reshape(a, node, x, shape, node)


RESHAPE_RULES = (view, flatten, unflatten)
