"""Rules for normalisation layers and functions: GroupNorm, LayerNorm, functional batch norm."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import fx, nn

from rramfx.channels.registry import (
    HAZARD,
    LAYER,
    REWRITE,
    constant,
    module_rule,
    optional_tensor,
    out_shape,
    rule,
    tensor,
)
from rramfx.channels.spaces import Layout
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["NORM_RULES", "group_layout"]


def group_layout(a: AnalysisState, node: fx.Node, what: str, lay: Layout, groups: int,
                 functional: bool = False) -> Layout | None:
    """GroupNorm's channels as whole groups: widening duplicates groups, never splits one, so every
    group keeps its statistics. One group (a LayerNorm over channels) is a hazard instead, and
    returns None (the group count stays 1); the functional form has a remedy (weighted statistics)."""
    c = a.S.numel(a.S.expand(lay))
    if groups == c:
        return lay
    if groups == 1:
        data = {"kind": "group_norm", "node": node, "dims": [lay]} if functional else None
        a.hazard(node, f"{what} normalises over all channels", lay, True, "weights" if functional else None, data)
        return None
    gs = a.S.new(groups, f"{node.name}.groups")
    a.unify(lay, ((gs, c // groups),))
    return ((gs, 1),)


def _affine(a: AnalysisState, node: fx.Node, params: list[TV | None], layouts: list[Layout]) -> None:
    """A functional norm's weight/bias/statistics: their dims follow the normalised dims."""
    for v in params:
        if v is None:
            continue
        if len(v.dims) != len(layouts):
            a.barrier(node, "a norm parameter of unexpected shape")
            continue
        for p, lay in zip(v.dims, layouts, strict=True):
            a.unify(p, lay)


@module_rule("group norm", (nn.GroupNorm,), exact=True, records=(LAYER, HAZARD))
def group_norm_module(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV,
                      shape: tuple[int, ...]) -> TV:
    """Channels are whole groups × group size; the group count grows."""
    glay = group_layout(a, node, f"GroupNorm '{path}'", x.dims[1], m.num_groups)
    a.use(path, "gn", {"c": x.dims[1], "groups": glay})
    return TV(shape, list(x.dims))


@module_rule("layer norm", (nn.LayerNorm,), exact=True, records=(LAYER, HAZARD))
def layer_norm_module(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV,
                      shape: tuple[int, ...]) -> TV:
    """The normalised dims follow their layouts; duplicating channels there is a hazard."""
    ndims = len(m.normalized_shape)
    data = {"kind": "ln_module", "path": path, "dims": x.dims[len(x.shape) - ndims:]}
    for d in range(len(x.shape) - ndims, len(x.shape)):
        a.hazard(node, f"LayerNorm '{path}' normalises over it", x.dims[d], True, "weights", data)
    a.use(path, "ln", {f"n{i}": x.dims[len(x.shape) - ndims + i] for i in range(ndims)})
    return TV(shape, list(x.dims))


@rule("layer_norm", functions=(F.layer_norm,), records=(HAZARD, REWRITE + ":layer_norm"),
      reads=(tensor("x", 0, "input"), constant("normalized_shape", 1, types=(list, tuple)),
             optional_tensor("weight", 2), optional_tensor("bias", 3), out_shape()))
def layer_norm(a: AnalysisState, node: fx.Node, x: TV, normalized_shape: Any, weight: TV | None,
               bias: TV | None, shape: tuple[int, ...]) -> Any:
    """As the LayerNorm module; the constant ``normalized_shape`` is rewritten."""
    if not all(isinstance(n, int) for n in normalized_shape):
        return a.barrier(node, "layer_norm over a shape computed at run time")
    lays = x.dims[len(shape) - len(normalized_shape):]
    data = {"kind": "layer_norm", "node": node, "dims": list(lays)}
    for lay in lays:
        a.hazard(node, "layer_norm normalises over it", lay, True, "weights", data)
    _affine(a, node, [weight, bias], lays)
    a.rewrite(node, "layer_norm", list(lays))
    return TV(shape, list(x.dims))


@rule("group_norm", functions=(F.group_norm,), records=(HAZARD, REWRITE + ":group_norm"),
      reads=(tensor("x", 0, "input"), constant("num_groups", 1, types=(int,)), optional_tensor("weight", 2),
             optional_tensor("bias", 3), out_shape()))
def group_norm(a: AnalysisState, node: fx.Node, x: TV, num_groups: int, weight: TV | None, bias: TV | None,
               shape: tuple[int, ...]) -> TV:
    """As the GroupNorm module; the constant group count is rewritten."""
    glay = group_layout(a, node, "group_norm", x.dims[1], num_groups, functional=True)
    _affine(a, node, [weight, bias], [x.dims[1]])
    a.rewrite(node, "group_norm", glay)
    return TV(shape, list(x.dims))


@rule("batch_norm", functions=(F.batch_norm,),
      reads=(tensor("x", 0, "input"), optional_tensor("running_mean", 1), optional_tensor("running_var", 2),
             optional_tensor("weight", 3), optional_tensor("bias", 4), out_shape()))
def batch_norm(a: AnalysisState, node: fx.Node, x: TV, running_mean: TV | None, running_var: TV | None,
               weight: TV | None, bias: TV | None, shape: tuple[int, ...]) -> TV:
    """Per-channel statistics and affine parameters (read with get_attr) follow the channels."""
    _affine(a, node, [running_mean, running_var, weight, bias], [x.dims[1]])
    return TV(shape, list(x.dims))


NORM_RULES = (group_norm_module, layer_norm_module, layer_norm, group_norm, batch_norm)
