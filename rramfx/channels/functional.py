"""Per-op rules for spatial ops, padding, reductions, softmax and functional norms (hazards and refusals)."""

from __future__ import annotations

from typing import Any

from torch import fx

from rramfx.channels.optables import _REDUCTIONS
from rramfx.channels.spaces import PIN_SHAPE, Layout
from rramfx.channels.values import TV

__all__ = []


class _FunctionalRules:
    """Mixin of `ChannelAnalysis`: spatial ops, padding, reductions, softmax, functional norms."""

    # ---- shape functions ----------------------------------------------------------------------------
    def _spatial(self, node: fx.Node, x: TV | None, shape: tuple[int, ...]) -> Any:
        """Pooling, resizing and padding: batch and channel dims pass, the others are spatial."""
        if x is None or shape is None or len(shape) != len(x.shape) or len(shape) < 3:
            return self.barrier(node, "a spatial operation on an unexpected shape")
        dims = [x.dims[0], x.dims[1]]
        for i in range(2, len(shape)):
            self.S.pin_layout(x.dims[i], PIN_SHAPE, f"spatial dimension of node '{node.name}'")
            dims.append(x.dims[i] if x.shape[i] == shape[i] else self.fixed_dims([shape[i]], node, "spatial")[0])
        if x.shape[1] != shape[1]:
            return self.barrier(node, "changes the channel count")
        return TV(shape, dims)

    def _pad(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        if x is None or not isinstance(pad, (list, tuple)) or not all(isinstance(p, int) for p in pad):
            return self.barrier(node, "padding by sizes the analysis cannot read")
        dims = list(x.dims)
        for k in range(len(pad) // 2):
            d = len(x.shape) - 1 - k
            if pad[2 * k] or pad[2 * k + 1]:
                self.S.pin_layout(x.dims[d], PIN_SHAPE, f"padded dimension at node '{node.name}'")
                dims[d] = self.fixed_dims([shape[d]], node, "padded dimension")[0]
        return TV(shape, dims)

    def _reduce(self, node: fx.Node, red: str) -> Any:
        x = self.tv(node.args[0])
        meta = node.meta.get("tensor_meta")
        if x is None:
            return self.barrier(node, f"{red} of something the analysis cannot read")
        n = len(x.shape)
        d = self._dim_arg(node, 1, "dim", None, n)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if d is None:
            reduced = tuple(range(n))
        elif isinstance(d, int):
            reduced = (d,)
        elif isinstance(d, tuple):
            reduced = d
        else:
            return self.barrier(node, f"{red} over dimensions computed at run time")
        kind = _REDUCTIONS[red]
        for k in reduced:
            if kind is not None:
                self.hazard(node, f"{red} over it", x.dims[k], kind == "uniform")
        dims = []
        for k in range(n):
            if k not in reduced:
                dims.append(x.dims[k])
            elif keep:
                dims.append(self.fixed_dims([1], node, "reduced dimension")[0])

        def tv_of(m: Any) -> TV | None:
            return TV(tuple(int(s) for s in m.shape), dims) if hasattr(m, "shape") else None

        if isinstance(meta, (list, tuple)) and not hasattr(meta, "shape"):  # max/min along a dim
            return tuple(tv_of(m) for m in meta)
        return tv_of(meta) if meta is not None else None

    def _softmax(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        d = self._dim_arg(node, 1, "dim", None, len(shape))
        if x is None or not isinstance(d, int):
            return self.barrier(node, "softmax over an implicit dimension")
        self.hazard(node, "softmax over it", x.dims[d], False)
        return TV(shape, list(x.dims))

    # ---- functional norms ---------------------------------------------------------------------------
    def _param_dims(self, node: fx.Node, arg: Any, layouts: list[Layout]) -> None:
        v = self.tv(arg)
        if v is None:
            return
        if len(v.dims) != len(layouts):
            self.barrier(node, "a norm parameter of unexpected shape")
            return
        for a, b in zip(v.dims, layouts, strict=True):
            self.unify(a, b)

    def _arg(self, node: fx.Node, pos: int, name: str) -> Any:
        return node.args[pos] if len(node.args) > pos else node.kwargs.get(name)

    def _layer_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        ns = self._arg(node, 1, "normalized_shape")
        if x is None or not isinstance(ns, (list, tuple)) or not all(isinstance(n, int) for n in ns):
            return self.barrier(node, "layer_norm over a shape computed at run time")
        k = len(ns)
        lays = x.dims[len(shape) - k:]
        for lay in lays:
            self.hazard(node, "layer_norm normalises over it", lay, True)
        for pos, name in ((2, "weight"), (3, "bias")):
            self._param_dims(node, self._arg(node, pos, name), lays)
        self.rewrites.append((node, "layer_norm", list(lays)))
        return TV(shape, list(x.dims))

    def _group_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        g = self._arg(node, 1, "num_groups")
        if x is None or not isinstance(g, int):
            return self.barrier(node, "group_norm with a group count computed at run time")
        glay = self._group_layout(node, "group_norm", x.dims[1], g)
        for pos, name in ((2, "weight"), (3, "bias")):
            self._param_dims(node, self._arg(node, pos, name), [x.dims[1]])
        self.rewrites.append((node, "group_norm", glay))
        return TV(shape, list(x.dims))

    def _batch_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, "batch_norm of something the analysis cannot read")
        for pos, name in ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias")):
            self._param_dims(node, self._arg(node, pos, name), [x.dims[1]])
        return TV(shape, list(x.dims))
