"""Module rules for layers: convolutions, linear layers, per-channel layers, activations, pooling,
flatten, and leaf modules that hide layers."""

from __future__ import annotations

import itertools
from typing import Any

from torch import fx, nn

from rramfx.channels.functional import spatial
from rramfx.channels.optables import ELEMENTWISE_MODULES, POOL_MODULES
from rramfx.channels.registry import HAZARD, LAYER, REWRITE, module_rule
from rramfx.channels.reshape import reshape
from rramfx.channels.spaces import PIN_SHAPE, Layout
from rramfx.channels.state import AnalysisState
from rramfx.channels.values import TV
from rramfx.graph.modules import is_weighted

__all__ = ["LAYER_RULES", "conv", "leaf_chain"]


def _conv_channels(a: AnalysisState, path: str, m: nn.Module, lin: Layout) -> Layout:
    """Record a convolution's channel layouts; returns its output layout."""
    cin, cout, g = m.in_channels, m.out_channels, m.groups
    if g == 1:
        out = a.fresh([cout], path, producer=path)[0]
        a.use(path, "conv", {"in": lin, "out": out})
        a.produced(out)
    elif g == cin:  # depthwise (with channel multiplier cout // cin)
        mult = cout // cin
        out = tuple((s, i * mult) for s, i in a.S.expand(lin))
        a.use(path, "conv", {"in": lin, "out": out, "depthwise": ()})
    else:  # grouped: every group widens the same, the group count stays
        pin_ = a.S.new(cin // g, f"{path}.group_in")
        a.unify(lin, ((pin_, 1),) * g)
        pout = a.S.new(cout // g, f"{path}.group_out", producer=path)
        out = ((pout, 1),) * g
        a.use(path, "conv", {"in": lin, "in_group": ((pin_, 1),), "out": out})
        a.produced(out)
    return out


@module_rule("convolution", (nn.modules.conv._ConvNd,), records=(LAYER, HAZARD))
def conv(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """Input channels: the input's layout; output channels: a new space (depthwise: the input's)."""
    if m.transposed:
        return a.barrier(node, f"transposed convolution '{path}' ({type(m).__name__})")
    nsp = len(m.kernel_size)
    if len(x.shape) != nsp + 2:
        return a.barrier(node, "a convolution on unbatched input")
    dims = [x.dims[0], _conv_channels(a, path, m, x.dims[1])]
    stride = m.stride if isinstance(m.stride, tuple) else (m.stride,) * nsp
    for i in range(nsp):
        n_in, n_out = x.shape[2 + i], shape[2 + i]
        if n_in == n_out and stride[i] == 1 and m.kernel_size[i] > 1:
            # a convolution sliding along a dimension that may carry channels (ECA attention): exact
            # when it runs on the original channels and copies take their source's result
            dims.append(x.dims[2 + i])
            own = node.op == "call_module" and node.target == path
            data = {"kind": "gather", "node": node, "dim": 2 + i, "layout": x.dims[2 + i], "path": path}
            a.hazard(node, f"convolution '{path}' slides along it", x.dims[2 + i], False,
                     "gather" if own else None, data if own else None)
        elif n_in == n_out and m.kernel_size[i] == 1 and stride[i] == 1:
            dims.append(x.dims[2 + i])
        else:
            a.S.pin_layout(x.dims[2 + i], PIN_SHAPE, f"spatial dimension resized by '{path}'")
            dims.append(a.fixed_dims([n_out], node, "spatial dimension")[0])
    return TV(shape, dims)


@module_rule("linear", (nn.Linear,), records=(LAYER,))
def linear(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> TV:
    """Input features: the last dim's layout; output features: a new space."""
    out = a.fresh([m.out_features], path, producer=path)[0]
    a.use(path, "linear", {"in": x.dims[-1], "out": out})
    a.produced(out)
    return TV(shape, [*x.dims[:-1], out])


@module_rule("batch norm", (nn.modules.batchnorm._BatchNorm,), records=(LAYER,))
def batch_norm(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> TV:
    """Per-channel statistics and affine parameters follow the channel layout."""
    a.use(path, "bn", {"c": x.dims[1]})
    return TV(shape, list(x.dims))


@module_rule("prelu", (nn.PReLU,), records=(LAYER,))
def prelu(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> TV:
    """One slope per channel (copied), or one for all (elementwise)."""
    if m.num_parameters != 1:
        a.use(path, "prelu", {"c": x.dims[1]})
    return TV(shape, list(x.dims))


@module_rule("activation", ELEMENTWISE_MODULES)
def activation(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """Activations, dropout, identity: the layout passes."""
    return TV(shape, list(x.dims)) if x.shape == shape else a.barrier(node, "changes shape")


@module_rule("pooling", POOL_MODULES)
def pooling(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """Pooling, upsampling and padding modules: see `spatial`."""
    return spatial(a, node, x, shape)


@module_rule("flatten", (nn.Flatten,), records=(REWRITE + ":view",))
def flatten(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """See `reshape` (nothing to rewrite: nn.Flatten has no sizes)."""
    return reshape(a, node, x, shape, None)


def _chain_ok(calls: list, x: TV, m: nn.Module, shape: tuple[int, ...]) -> bool:
    first_in = calls[0][2]
    ok = first_in.dim() == len(x.shape) and tuple(first_in.shape[:2]) == x.shape[:2]
    for prev, cur in itertools.pairwise(calls):
        ok = ok and cur[2] is prev[3]
    called = {id(c[1]) for c in calls}
    ok = ok and all(id(sub) in called for sub in m.modules() if is_weighted(sub))
    return ok and tuple(calls[-1][3].shape) == shape


@module_rule("leaf module", (), records=(LAYER, HAZARD, REWRITE + ":view"))
def leaf_chain(a: AnalysisState, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
    """A leaf module that hides layers (traced as one node) is followed when its layers ran as one
    chain on the example input: each called layer consumed the previous one's output. Any other
    leaf module is a barrier."""
    if path not in a.leaf_calls:
        held = " holds parameters" if any(True for _ in m.parameters()) else ""
        return a.barrier(node, f"leaf module of unknown type {type(m).__name__}{held}")
    calls = a.leaf_calls[path]
    if any(True for _ in m.parameters(recurse=False)) or not calls:
        return a.barrier(node, f"leaf module '{path}' ({type(m).__name__}) hides layers the analysis cannot follow")
    if not _chain_ok(calls, x, m, shape):
        return a.barrier(node, f"leaf module '{path}' ({type(m).__name__}) hides layers that do not run as one "
                               "chain; make it traceable")
    cur: Any = x
    if tuple(calls[0][2].shape) != x.shape:  # spatial resizing before the first layer
        cur = spatial(a, node, x, tuple(calls[0][2].shape))
    for name, sub, _, out in calls:
        cur = a.apply_module(node, f"{path}.{name}", sub, cur, tuple(out.shape))
        if not isinstance(cur, TV):
            return cur
    return cur


LAYER_RULES = (conv, linear, batch_norm, prelu, activation, pooling, flatten)
