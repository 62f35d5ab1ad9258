"""Rules for spatial functions (pooling, resizing, padding), reductions and softmax."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from rramfx.channels.optables import REDUCTION_FUNCTIONS, REDUCTIONS, SPATIAL_FUNCTIONS
from rramfx.channels.registry import HAZARD, VALUE, constant, dim, out_shape, rule, tensor
from rramfx.channels.spaces import PIN_SHAPE
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["FUNCTIONAL_RULES", "spatial"]


def spatial(a: AnalysisState, node: fx.Node, x: TV | None, shape: tuple[int, ...] | None) -> Any:
    """Pooling, resizing and padding: batch and channel dims pass, the others are spatial sizes."""
    if x is None or shape is None or len(shape) != len(x.shape) or len(shape) < 3:
        return a.barrier(node, "a spatial operation on an unexpected shape")
    dims = [x.dims[0], x.dims[1]]
    for i in range(2, len(shape)):
        a.S.pin_layout(x.dims[i], PIN_SHAPE, f"spatial dimension of node '{node.name}'")
        dims.append(x.dims[i] if x.shape[i] == shape[i] else a.fixed_dims([shape[i]], node, "spatial")[0])
    if x.shape[1] != shape[1]:
        return a.barrier(node, "changes the channel count")
    return TV(shape, dims)


@rule("pooling", functions=tuple(SPATIAL_FUNCTIONS), reads=(tensor("x", 0, "input"), out_shape()))
def pooling(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> Any:
    """Functional pooling and interpolation: see `spatial`."""
    return spatial(a, node, x, shape)


@rule("pad", functions=(F.pad,),
      reads=(tensor("x", 0, "input"), constant("pad", 1, types=(list, tuple)), out_shape()))
def pad(a: AnalysisState, node: fx.Node, x: TV, pad: Any, shape: tuple[int, ...]) -> Any:
    """Padded dims become fixed sizes; the others pass."""
    if not all(isinstance(p, int) for p in pad):
        return a.barrier(node, "padding by sizes the analysis cannot read")
    dims = list(x.dims)
    for k in range(len(pad) // 2):
        d = len(x.shape) - 1 - k
        if pad[2 * k] or pad[2 * k + 1]:
            a.S.pin_layout(x.dims[d], PIN_SHAPE, f"padded dimension at node '{node.name}'")
            dims[d] = a.fixed_dims([shape[d]], node, "padded dimension")[0]
    return TV(shape, dims)


@rule("reduction", functions=tuple(REDUCTION_FUNCTIONS), methods=tuple(REDUCTIONS), produces=VALUE,
      records=(HAZARD,), reads=(tensor("x", 0, "input"), dim("dim", 1, default=None, of="x"),
                                constant("keepdim", 2, default=False)))
def reduction(a: AnalysisState, node: fx.Node, x: TV, dim: Any, keepdim: Any) -> Any:
    """The reduced dims disappear (or become fixed size 1); a mean over channels is exact only when
    every channel is duplicated equally, a sum or variance never (see ``REDUCTIONS``)."""
    red = REDUCTION_FUNCTIONS.get(node.target, node.target)
    n = len(x.shape)
    reduced = tuple(range(n)) if dim is None else (dim,) if isinstance(dim, int) else dim
    kind = REDUCTIONS[red]
    for k in reduced:
        if kind is not None:
            a.hazard(node, f"{red} over it", x.dims[k], kind == "uniform")
    dims = []
    for k in range(n):
        if k not in reduced:
            dims.append(x.dims[k])
        elif keepdim:
            dims.append(a.fixed_dims([1], node, "reduced dimension")[0])

    def tv_of(m: Any) -> TV | None:
        return TV(tuple(int(s) for s in m.shape), dims) if hasattr(m, "shape") else None

    meta = node.meta.get("tensor_meta")
    if isinstance(meta, (list, tuple)) and not hasattr(meta, "shape"):  # max/min along a dim
        return tuple(tv_of(m) for m in meta)
    return tv_of(meta) if meta is not None else None


@rule("softmax", functions=(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax),
      methods=("softmax", "log_softmax"), records=(HAZARD,),
      reads=(tensor("x", 0, "input"), dim("dim", 1, default=None), out_shape()))
def softmax(a: AnalysisState, node: fx.Node, x: TV, dim: Any, shape: tuple[int, ...]) -> Any:
    """A softmax over duplicated channels gives each copy less weight: a hazard."""
    if not isinstance(dim, int):
        return a.barrier(node, "softmax over an implicit dimension")
    a.hazard(node, "softmax over it", x.dims[dim], False)
    return TV(shape, list(x.dims))


FUNCTIONAL_RULES = (pooling, pad, reduction, softmax)
