"""Rules for indexing, concatenation, stacking, splitting, narrowing, permuting and expanding."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

from rramfx.channels.registry import (
    REWRITE,
    TENSORS,
    VALUE,
    constant,
    dim,
    out_shape,
    rule,
    tensor,
    tensors,
    value,
    varargs,
)
from rramfx.channels.spaces import PIN_BROADCAST, PIN_UNSUPPORTED, Layout
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["INDEX_RULES"]


def _expand_index(items: tuple, ndim: int) -> list[Any]:
    """An index tuple with the ellipsis and the missing trailing dims spelled out as full slices."""
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in items:
        expanded.extend([slice(None)] * (ndim - n_real) if i is Ellipsis else [i])
    expanded.extend([slice(None)] * (ndim - sum(1 for i in expanded if i is not None)))
    return expanded


def _slice(a: AnalysisState, node: fx.Node, lay: Layout, n: int, i: slice, pos: int, slices: list) -> Layout:
    """The layout of ``x[..., i, ...]`` along one dim; records the bounds to rewrite."""
    start, stop, step = i.indices(n)
    if step != 1:
        a.S.pin_layout(lay, PIN_UNSUPPORTED, f"strided slice at node '{node.name}'")
        return a.fixed_dims([len(range(start, stop, step))], node, "strided slice")[0]
    if (start, stop) == (0, n):
        if i.start is not None or i.stop is not None:  # explicit bounds: rewrite them too
            slices.append((pos, (), lay))
        return lay
    stop = max(stop, start)
    head, mid, tail = (a.S.new(k, f"{node.name}.slice") if k else None for k in (start, stop - start, n - stop))
    a.unify(lay, tuple((s, 1) for s in (head, mid, tail) if s is not None))
    mid_lay: Layout = ((mid, 1),) if mid is not None else ()
    slices.append((pos, ((head, 1),) if head is not None else (), mid_lay))
    return mid_lay if mid is not None else a.fixed_dims([0], node, "empty slice")[0]


@rule("getitem", functions=(operator.getitem,), produces=VALUE, records=(REWRITE + ":getitem",),
      reads=(value("base", 0), constant("index", 1), out_shape(required=False)))
def getitem(a: AnalysisState, node: fx.Node, base: Any, index: Any, shape: tuple[int, ...] | None) -> Any:
    """An item of a tuple of tensors, or basic indexing of a tensor: integer indices pin their dim,
    slices refine it at their bounds (rewritten when the space is widened), None adds a fixed axis."""
    if base is None:
        return None
    if isinstance(base, (list, tuple)):
        return base[index] if isinstance(index, (int, slice)) else None
    if shape is None:
        return a.barrier(node, "indexing that does not return a tensor")
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, (torch.Tensor, list)) for i in items):
        return a.barrier(node, "indexing with tensors or sizes computed at run time")
    expanded = _expand_index(items, len(base.shape))
    dims: list[Layout] = []
    slices: list[tuple[int, Layout, Layout]] = []
    d = 0
    for pos, i in enumerate(expanded):
        if i is None:
            dims.append(a.fixed_dims([1], node, "new axis")[0])
            continue
        if isinstance(i, int):
            a.S.pin_layout(base.dims[d], PIN_UNSUPPORTED, f"indexed with an integer at node '{node.name}'")
        elif isinstance(i, slice):
            dims.append(_slice(a, node, base.dims[d], base.shape[d], i, pos, slices))
        d += 1
    if slices:
        a.rewrite(node, "getitem", (expanded, slices))
    return TV(shape, dims)


@rule("cat", functions=(torch.cat, torch.concat, torch.concatenate),
      reads=(tensors("tensors", 0), dim("dim", 1, default=0), out_shape()))
def cat(a: AnalysisState, node: fx.Node, tensors: list[TV], dim: int, shape: tuple[int, ...]) -> TV:
    """The concatenated dim's layout is the inputs' layouts one after the other; the others unify."""
    dims = []
    for k in range(len(shape)):
        if k == dim:
            dims.append(tuple(seg for t in tensors for seg in t.dims[k]))
        else:
            for t in tensors[1:]:
                a.unify(tensors[0].dims[k], t.dims[k])
            dims.append(tensors[0].dims[k])
    return TV(shape, dims)


@rule("stack", functions=(torch.stack,), reads=(tensors("tensors", 0), dim("dim", 1, default=0), out_shape()))
def stack(a: AnalysisState, node: fx.Node, tensors: list[TV], dim: int, shape: tuple[int, ...]) -> TV:
    """All inputs unify; the new dim is a fixed size."""
    for t in tensors[1:]:
        for p, q in zip(tensors[0].dims, t.dims, strict=True):
            a.unify(p, q)
    dims = list(tensors[0].dims)
    dims.insert(dim, a.fixed_dims([len(tensors)], node, "stacked dimension")[0])
    return TV(shape, dims)


def _output_shapes(node: fx.Node) -> list[tuple[int, ...]] | None:
    metas = node.meta.get("tensor_meta")
    if not isinstance(metas, (list, tuple)) or hasattr(metas, "shape"):
        return None
    return [tuple(int(s) for s in m.shape) for m in metas]


@rule("split", functions=(torch.split, torch.chunk, torch.tensor_split),
      methods=("split", "chunk", "tensor_split"), produces=TENSORS, records=(REWRITE + ":split",),
      reads=(tensor("x", 0), dim("dim", 2, default=0, of="x")))
def split(a: AnalysisState, node: fx.Node, x: TV, dim: Any) -> Any:
    """The input is refined at the cut points; the sizes are rewritten as an explicit ``split``."""
    shapes = _output_shapes(node)
    if shapes is None or not isinstance(dim, int):
        return a.barrier(node, "a split the analysis cannot read")
    pieces = [s[dim] for s in shapes]
    spaces = [a.S.new(k, f"{node.name}.part{i}") if k else None for i, k in enumerate(pieces)]
    a.unify(x.dims[dim], tuple((s, 1) for s in spaces if s is not None))
    out = []
    for s, sh in zip(spaces, shapes, strict=True):
        dims = list(x.dims)
        dims[dim] = ((s, 1),) if s is not None else a.fixed_dims([0], node, "empty part")[0]
        out.append(TV(sh, dims))
    a.rewrite(node, "split", (dim, [o.dims[dim] for o in out]))
    return tuple(out)


@rule("unbind", functions=(torch.unbind,), methods=("unbind",), produces=TENSORS,
      reads=(tensor("x", 0), dim("dim", 1, default=0, of="x")))
def unbind(a: AnalysisState, node: fx.Node, x: TV, dim: Any) -> Any:
    """Each item is one index of the unbound dim, which is pinned."""
    shapes = _output_shapes(node)
    if shapes is None or not isinstance(dim, int):
        return a.barrier(node, "unbind of something the analysis cannot read")
    a.S.pin_layout(x.dims[dim], PIN_UNSUPPORTED, f"unbound at node '{node.name}'")
    return tuple(TV(s, [lay for k, lay in enumerate(x.dims) if k != dim]) for s in shapes)


@rule("narrow", functions=(torch.narrow,), methods=("narrow",), records=(REWRITE + ":narrow",),
      reads=(tensor("x", 0), dim("dim", 1, of="x"), constant("start", 2, types=(int,)),
             constant("length", 3, types=(int,)), out_shape()))
def narrow(a: AnalysisState, node: fx.Node, x: TV, dim: int, start: int, length: int, shape: tuple[int, ...]) -> TV:
    """Like a slice: the dim is refined at start and start + length."""
    n = x.shape[dim]
    head, mid, tail = (a.S.new(k, f"{node.name}.part") if k else None for k in (start, length, n - start - length))
    a.unify(x.dims[dim], tuple((s, 1) for s in (head, mid, tail) if s is not None))
    dims = list(x.dims)
    dims[dim] = ((mid, 1),)
    a.rewrite(node, "narrow", (dim, ((head, 1),) if head is not None else (), ((mid, 1),)))
    return TV(shape, dims)


def _order(name: str, rest: tuple, kwargs: dict, n: int) -> list[int]:
    """The output's dims as input dims, for permute, t, movedim, transpose and swapaxes."""
    if name == "permute":
        order = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
        return [int(o) % n for o in (order or kwargs.get("dims", []))]
    if name == "t":
        return list(range(n))[::-1]
    if name == "movedim":
        src, dst = rest[0] % n, rest[1] % n
        order = [k for k in range(n) if k != src]
        order.insert(dst, src)
        return order
    p, q = (int(r) % n for r in rest[:2])
    order = list(range(n))
    order[p], order[q] = order[q], order[p]
    return order


@rule("permute", functions=(torch.permute, torch.transpose, torch.swapaxes, torch.movedim, torch.t),
      methods=("permute", "transpose", "swapaxes", "movedim", "t"),
      reads=(tensor("x", 0), varargs("dims", 1), out_shape()))
def permute(a: AnalysisState, node: fx.Node, x: TV, dims: tuple, shape: tuple[int, ...]) -> TV:
    """Layouts move with their dims."""
    name = node.target if node.op == "call_method" else node.target.__name__
    order = _order(name, dims, dict(node.kwargs), len(x.shape))
    return TV(shape, [x.dims[o] for o in order])


@rule("expand", methods=("expand",), records=(REWRITE + ":view",),
      reads=(tensor("x", 0), varargs("sizes", 1), out_shape()))
def expand(a: AnalysisState, node: fx.Node, x: TV, sizes: tuple, shape: tuple[int, ...]) -> TV:
    """New leading dims are fixed sizes. A size-1 dim expanded to n holds n equal copies, which any
    widening keeps equal: it gets a space of its own, free to follow what it is combined with (a
    constant size is rewritten, one computed at run time follows by itself)."""
    lead = len(shape) - len(x.shape)
    dims = a.fixed_dims(shape[:lead], node, "expanded dimension")
    for k, n in enumerate(x.shape):
        if n == shape[lead + k]:
            dims.append(x.dims[k])
        else:
            a.S.pin_layout(x.dims[k], PIN_BROADCAST, f"expanded at node '{node.name}'")
            dims.append(a.fresh([shape[lead + k]], f"{node.name}.expanded")[0])
    a.rewrite(node, "view", list(dims))
    return TV(shape, dims)


INDEX_RULES = (getitem, cat, stack, split, unbind, narrow, permute, expand)
