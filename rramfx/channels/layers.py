"""Per-layer rules: conv/linear, norm layers and leaf chains, plus parameters read with get_attr."""

from __future__ import annotations

import itertools
from typing import Any

from torch import fx, nn

from rramfx.channels.optables import _ELEMENTWISE_MODULES, _POOL_MODULES
from rramfx.channels.spaces import PIN_SHAPE, Layout
from rramfx.channels.values import TV, ModuleUse
from rramfx.graph.modules import is_conv, is_weighted

__all__ = []


class _LayerRules:
    """Mixin of `ChannelAnalysis`: channel couplings of layer modules and get_attr parameters."""

    # ---- parameters read with get_attr ---------------------------------------------------------------
    def _get_attr(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        if shape is None:
            return None
        dims = self.fresh(shape, node.target)
        prev = self.params.get(node.target)
        if prev is not None:
            for d, lay in prev.items():
                self.unify(lay, dims[d])
        else:
            self.params[node.target] = dict(enumerate(dims))
        return TV(shape, dims)

    # ---- modules ------------------------------------------------------------------------------------
    def _module(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        m = self.gm.get_submodule(node.target)
        x = self.tv(node.args[0]) if node.args else None
        if x is None or shape is None:
            return self.barrier(node, "a module call without a single tensor input and output")
        return self._apply_module(node, node.target, m, x, shape)

    def _apply_module(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        if is_conv(m):
            return self._conv(node, path, m, x, shape)
        if isinstance(m, nn.Linear):
            return self._linear(node, path, m, x, shape)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self._norm_per_channel(node, path, "bn", x, shape)
        if type(m) is nn.GroupNorm:
            return self._group_norm(node, path, m.num_groups, x, shape)
        if type(m) is nn.LayerNorm:
            return self._layer_norm(node, path, len(m.normalized_shape), x, shape)
        if isinstance(m, nn.PReLU):
            if m.num_parameters == 1:
                return self.broadcast(node, [node.args[0]], shape) if node.args else TV(shape, list(x.dims))
            return self._norm_per_channel(node, path, "prelu", x, shape)
        if isinstance(m, _ELEMENTWISE_MODULES):
            return TV(shape, list(x.dims)) if x.shape == shape else self.barrier(node, "changes shape")
        if isinstance(m, _POOL_MODULES):
            return self._spatial(node, x, shape)
        if isinstance(m, nn.Flatten):
            return self._reshape(node, x, shape, None)
        if path in self.leaf_calls:
            return self._leaf_chain(node, path, m, x, shape)
        if any(True for _ in m.parameters()):
            return self.barrier(node, f"leaf module of unknown type {type(m).__name__} holds parameters")
        return self.barrier(node, f"leaf module of unknown type {type(m).__name__}")

    def _use(self, path: str, kind: str, layouts: dict[str, Layout]) -> None:
        """Record (or, for a module called twice, unify) the channel layouts of a layer."""
        prev = self.modules.get(path)
        if prev is None:
            self.modules[path] = ModuleUse(path, kind, layouts)
            return
        for key, lay in layouts.items():
            self.unify(prev.layouts[key], lay)

    def _conv(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> TV:
        nsp = len(m.kernel_size)
        if len(x.shape) != nsp + 2:
            return self.barrier(node, "a convolution on unbatched input")
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        lin = x.dims[1]
        if g == 1:
            out = self.fresh([cout], path, producer=path)[0]
            self._use(path, "conv", {"in": lin, "out": out})
            self.producer_layouts.append(out)
        elif g == cin:  # depthwise (with channel multiplier cout // cin)
            mult = cout // cin
            out = tuple((s, i * mult) for s, i in self.S.expand(lin))
            self._use(path, "conv", {"in": lin, "out": out, "depthwise": ()})
        else:
            pin_ = self.S.new(cin // g, f"{path}.group_in")
            self.unify(lin, ((pin_, 1),) * g)
            pout = self.S.new(cout // g, f"{path}.group_out", producer=path)
            out = ((pout, 1),) * g
            self._use(path, "conv", {"in": lin, "in_group": ((pin_, 1),), "out": out})
            self.producer_layouts.append(out)
        dims = [x.dims[0], out]
        stride = m.stride if isinstance(m.stride, tuple) else (m.stride,) * nsp
        for i in range(nsp):
            n_in, n_out = x.shape[2 + i], shape[2 + i]
            if n_in == n_out and stride[i] == 1 and m.kernel_size[i] > 1:
                # a convolution sliding along a dimension that may carry channels (ECA attention)
                dims.append(x.dims[2 + i])
                self.hazard(node, f"convolution '{path}' slides along it", x.dims[2 + i], False)
            elif n_in == n_out and m.kernel_size[i] == 1 and stride[i] == 1:
                dims.append(x.dims[2 + i])
            else:
                self.S.pin_layout(x.dims[2 + i], PIN_SHAPE, f"spatial dimension resized by '{path}'")
                dims.append(self.fixed_dims([n_out], node, "spatial dimension")[0])
        return TV(shape, dims)

    def _linear(self, node: fx.Node, path: str, m: nn.Linear, x: TV, shape: tuple[int, ...]) -> TV:
        out = self.fresh([m.out_features], path, producer=path)[0]
        self._use(path, "linear", {"in": x.dims[-1], "out": out})
        self.producer_layouts.append(out)
        return TV(shape, [*x.dims[:-1], out])

    def _norm_per_channel(self, node: fx.Node, path: str, kind: str, x: TV, shape: tuple[int, ...]) -> TV:
        self._use(path, kind, {"c": x.dims[1]})
        return TV(shape, list(x.dims))

    def _group_layout(self, node: fx.Node, what: str, lay: Layout, groups: int) -> Layout | None:
        """GroupNorm's channels as whole groups: widening duplicates groups, never splits one, so
        every group keeps its statistics. One group (a LayerNorm over channels) is a hazard instead,
        and returns None (the group count stays 1)."""
        c = self.S.numel(self.S.expand(lay))
        if groups == c:
            return lay
        if groups == 1:
            self.hazard(node, f"{what} normalises over all channels", lay, True)
            return None
        gs = self.S.new(groups, f"{node.name}.groups")
        self.unify(lay, ((gs, c // groups),))
        return ((gs, 1),)

    def _group_norm(self, node: fx.Node, path: str, groups: int, x: TV, shape: tuple[int, ...]) -> TV:
        glay = self._group_layout(node, f"GroupNorm '{path}'", x.dims[1], groups)
        self._use(path, "gn", {"c": x.dims[1], "groups": glay})
        return TV(shape, list(x.dims))

    def _layer_norm(self, node: fx.Node, path: str, ndims: int, x: TV, shape: tuple[int, ...]) -> TV:
        for d in range(len(x.shape) - ndims, len(x.shape)):
            self.hazard(node, f"LayerNorm '{path}' normalises over it", x.dims[d], True)
        self._use(path, "ln", {f"n{i}": x.dims[len(x.shape) - ndims + i] for i in range(ndims)})
        return TV(shape, list(x.dims))

    def _leaf_chain(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        """A leaf module that hides layers (traced as one node) is followed when its layers ran as one
        chain on the example input: each called layer consumed the previous one's output."""
        calls = self.leaf_calls.get(path) or []
        if any(True for _ in m.parameters(recurse=False)) or not calls:
            return self.barrier(node, f"leaf module '{path}' hides layers the analysis cannot follow")
        first_in = calls[0][2]
        ok = first_in.dim() == len(x.shape) and tuple(first_in.shape[:2]) == x.shape[:2]
        for prev, cur in itertools.pairwise(calls):
            ok = ok and cur[2] is prev[3]
        called = {id(c[1]) for c in calls}
        ok = ok and all(id(sub) in called for sub in m.modules() if is_weighted(sub))
        ok = ok and tuple(calls[-1][3].shape) == shape
        if not ok:
            return self.barrier(
                node, f"leaf module '{path}' hides layers that do not run as one chain; make it traceable")
        cur = x
        if tuple(first_in.shape) != x.shape:  # spatial resizing before the first layer
            cur = self._spatial(node, x, tuple(first_in.shape))
        for name, sub, _, out in calls:
            cur = self._apply_module(node, f"{path}.{name}", sub, cur, tuple(out.shape))
            if not isinstance(cur, TV):
                return cur
        return cur
