"""Rules for spatial functions (pooling, resizing, padding), reductions, norms and softmax."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from rramfx.channels.optables import REDUCTION_FUNCTIONS, REDUCTIONS, SPATIAL_FUNCTIONS, WEIGHTED_REDUCTIONS
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
      reads=(tensor("x", 0, "input"), constant("pad", 1, types=(list, tuple)),
             constant("mode", 2, default="constant"), out_shape()))
def pad(a: AnalysisState, node: fx.Node, x: TV, pad: Any, mode: Any, shape: tuple[int, ...]) -> Any:
    """Constant padding is a concatenation with fixed-size blocks (a channel dim padded with zeros
    keeps its channels, in place); reflect, replicate and circular padding copy border entries, so
    the padded dims become fixed sizes."""
    if not all(isinstance(p, int) for p in pad):
        return a.barrier(node, "padding by sizes the analysis cannot read")
    dims = list(x.dims)
    for k in range(len(pad) // 2):
        d = len(x.shape) - 1 - k
        before, after = pad[2 * k], pad[2 * k + 1]
        if not (before or after):
            continue
        if mode == "constant" and before >= 0 and after >= 0:
            edges = [a.fixed_dims([n], node, "padding")[0] if n else () for n in (before, after)]
            dims[d] = (*edges[0], *x.dims[d], *edges[1])
        else:
            a.S.pin_layout(x.dims[d], PIN_SHAPE, f"padded dimension at node '{node.name}'")
            dims[d] = a.fixed_dims([shape[d]], node, "padded dimension")[0]
    return TV(shape, dims)


def _reduced(a: AnalysisState, node: fx.Node, x: TV, reduced: tuple[int, ...], keepdim: Any) -> Any:
    """The value of a reduction over ``reduced``: those dims disappear or become fixed size 1."""
    dims = []
    for k in range(len(x.shape)):
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


@rule("reduction", functions=tuple(REDUCTION_FUNCTIONS), methods=tuple(REDUCTIONS), produces=VALUE,
      records=(HAZARD,), reads=(tensor("x", 0, "input"), dim("dim", 1, default=None, of="x"),
                                constant("keepdim", 2, default=False)))
def reduction(a: AnalysisState, node: fx.Node, x: TV, dim: Any, keepdim: Any) -> Any:
    """Over duplicated channels a max is unchanged, a mean exact only when every channel is copied
    equally, a sum never (see ``REDUCTIONS``); a mean or a sum is kept exact by weighting each
    element 1 / copies (remedy ``weights``)."""
    red = REDUCTION_FUNCTIONS.get(node.target, node.target)
    reduced = tuple(range(len(x.shape))) if dim is None else (dim,) if isinstance(dim, int) else dim
    kind = REDUCTIONS[red]
    remedy = "weights" if red in WEIGHTED_REDUCTIONS else None
    data = {"kind": "reduce", "op": red, "node": node, "reduced": reduced, "keepdim": bool(keepdim),
            "ndim": len(x.shape), "dims": {k: x.dims[k] for k in reduced}} if remedy else None
    for k in reduced:
        if kind is not None:
            a.hazard(node, f"{red} over it", x.dims[k], kind == "uniform", remedy, data)
    return _reduced(a, node, x, reduced, keepdim)


@rule("norm", functions=(torch.norm,), methods=("norm",), produces=VALUE, records=(HAZARD,),
      reads=(tensor("x", 0, "input"), constant("p", 1, default=2), dim("dim", 2, default=None, of="x"),
             constant("keepdim", 3, default=False)))
def norm(a: AnalysisState, node: fx.Node, x: TV, p: Any, dim: Any, keepdim: Any) -> Any:
    """A p-norm over dims (``F.normalize`` over channels, GRN over positions): duplicated channels
    count twice, unless each element is weighted 1 / copies (remedy ``weights``, numeric p)."""
    reduced = tuple(range(len(x.shape))) if dim is None else (dim,) if isinstance(dim, int) else dim
    numeric = (isinstance(p, (int, float)) and 0 < p < float("inf")) or p == "fro"
    data = {"kind": "reduce", "op": "norm", "p": 2 if p == "fro" else p, "node": node, "reduced": reduced,
            "keepdim": bool(keepdim), "ndim": len(x.shape), "dims": {k: x.dims[k] for k in reduced}}
    for k in reduced:
        a.hazard(node, f"{p}-norm over it", x.dims[k], False, "weights" if numeric else None,
                 data if numeric else None)
    return _reduced(a, node, x, reduced, keepdim)


@rule("normalize", functions=(F.normalize,), records=(HAZARD,),
      reads=(tensor("x", 0, "input"), constant("p", 1, default=2.0), dim("dim", 2, default=1, of="x"),
             out_shape()))
def normalize(a: AnalysisState, node: fx.Node, x: TV, p: Any, dim: Any, shape: tuple[int, ...]) -> Any:
    """``F.normalize``: divides by a p-norm along ``dim`` (see `norm`); the layout passes."""
    if not isinstance(dim, int):
        return a.barrier(node, "normalize over several dimensions")
    numeric = isinstance(p, (int, float)) and 0 < p < float("inf")
    data = {"kind": "normalize", "node": node, "dim": dim, "ndim": len(x.shape), "layout": x.dims[dim]}
    a.hazard(node, f"{p}-norm over it", x.dims[dim], False, "weights" if numeric else None, data if numeric else None)
    return TV(shape, list(x.dims))


@rule("softmax", functions=(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax),
      methods=("softmax", "log_softmax"), records=(HAZARD,),
      reads=(tensor("x", 0, "input"), dim("dim", 1, default=None), out_shape()))
def softmax(a: AnalysisState, node: fx.Node, x: TV, dim: Any, shape: tuple[int, ...]) -> Any:
    """A softmax over duplicated channels gives each copy less weight: a hazard, kept exact by
    weighting each term of the normaliser 1 / copies (remedy ``weights``)."""
    if not isinstance(dim, int):
        return a.barrier(node, "softmax over an implicit dimension")
    data = {"kind": "softmax", "node": node, "dim": dim, "ndim": len(x.shape), "layout": x.dims[dim]}
    a.hazard(node, "softmax over it", x.dims[dim], False, "weights", data)
    return TV(shape, list(x.dims))


FUNCTIONAL_RULES = (pooling, pad, reduction, norm, normalize, softmax)
