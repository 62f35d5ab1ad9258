"""Rules for operations that mix values with tensors of the graph rather than module weights:
functional convolutions with fixed filters (blur pooling), matrix products (global-context
attention), and torchvision's stochastic depth."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from rramfx.channels.functional import spatial
from rramfx.channels.registry import (
    HAZARD,
    REWRITE,
    argument,
    module_rule,
    optional_tensor,
    out_shape,
    rule,
    tensor,
)
from rramfx.channels.spaces import PIN_SHAPE
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV

__all__ = ["MIXING_RULES"]


@rule("functional convolution", functions=(F.conv1d, F.conv2d, F.conv3d), records=(REWRITE + ":conv_groups",),
      reads=(tensor("x", 0, "input"), tensor("weight", 1), optional_tensor("bias", 2),
             argument("groups", 6, default=1), out_shape()))
def functional_conv(a: AnalysisState, node: fx.Node, x: TV, weight: TV, bias: TV | None, groups: Any,
                    shape: tuple[int, ...]) -> Any:
    """A depthwise convolution with a filter tensor of the graph (timm's BlurPool2d, anti-aliasing):
    the filter's rows follow the channels and are copied with them, the group count (a constant) is
    rewritten. A dense or grouped one holds weights that would have to be split like a layer's:
    make it a module."""
    cin = x.shape[1]
    if len(weight.shape) != len(x.shape) or weight.shape[1] != 1 or cin == 1 or weight.shape[0] % cin:
        return a.barrier(node, "a functional convolution that is not depthwise (give it a module to hold "
                               "its weight, e.g. nn.Conv2d)")
    mult = weight.shape[0] // cin
    out = tuple((s, i * mult) for s, i in a.S.expand(x.dims[1]))
    a.unify(weight.dims[0], out)
    for d in range(1, len(weight.shape)):
        a.S.pin_layout(weight.dims[d], PIN_SHAPE, f"filter dimension of node '{node.name}'")
    if bias is not None:
        a.unify(bias.dims[0], out)
    dims = [x.dims[0], out]
    for i in range(2, len(shape)):
        a.S.pin_layout(x.dims[i], PIN_SHAPE, f"spatial dimension of node '{node.name}'")
        dims.append(x.dims[i] if x.shape[i] == shape[i] else a.fixed_dims([shape[i]], node, "spatial")[0])
    if isinstance(groups, int):
        a.rewrite(node, "conv_groups", x.dims[1])
    return TV(shape, dims)


@rule("matmul", functions=(torch.matmul, operator.matmul, torch.bmm), methods=("matmul", "bmm"),
      records=(HAZARD,), reads=(tensor("x", 0, "input"), tensor("y", 1, "other"), out_shape()))
def matmul(a: AnalysisState, node: fx.Node, x: TV, y: TV, shape: tuple[int, ...]) -> Any:
    """``x @ y``: the batch dims broadcast, ``x``'s rows and ``y``'s columns pass, the contracted dim
    unifies and is summed over: a hazard when it carries channels (attention scores q·k over
    channels), kept exact by weighting ``x``'s columns 1 / copies (remedy ``weights``); harmless
    over spatial positions (global-context pooling)."""
    if len(x.shape) < 2 or len(y.shape) < 2:
        return a.barrier(node, "a matrix product with a vector")
    a.unify(x.dims[-1], y.dims[-2])
    data = {"kind": "matmul", "node": node, "layout": x.dims[-1]}
    a.hazard(node, "matmul sums over it", x.dims[-1], False, "weights", data)
    batch = a.broadcast(node, [TV(x.shape[:-2], x.dims[:-2]), TV(y.shape[:-2], y.dims[:-2])], shape[:-2])
    return TV(shape, [*batch.dims, x.dims[-2], y.dims[-1]])


def _stochastic_depth() -> tuple[Callable[..., Any], ...]:
    try:
        from torchvision.ops import stochastic_depth
    except ImportError:  # torchvision is optional for the analysis
        return ()
    return (stochastic_depth,)


@rule("stochastic depth", functions=_stochastic_depth(), reads=(tensor("x", 0, "input"), out_shape()))
def stochastic_depth(a: AnalysisState, node: fx.Node, x: TV, shape: tuple[int, ...]) -> TV:
    """torchvision's ``stochastic_depth``: identity in eval mode, a per-sample (or per-batch) factor
    in training; the layout passes."""
    return TV(shape, list(x.dims))


def _blur_pool() -> tuple[type, ...]:
    try:
        from timm.layers import BlurPool2d
    except ImportError:  # timm is optional for the analysis
        return ()
    return (BlurPool2d,)


@module_rule("blur pool", _blur_pool())
def blur_pool(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """timm's BlurPool2d as a leaf (the tracer cannot trace the form that reads its channel count from
    the input): one fixed filter for every channel, so it widens as pooling does. The form with a
    filter per channel traces into a functional convolution (see `functional_conv`)."""
    if m.channels is not None:
        return a.barrier(node, f"leaf module '{path}' (BlurPool2d) holds a filter per channel")
    return spatial(a, node, x, shape)


MIXING_RULES = (functional_conv, matmul, stochastic_depth, blur_pool)
