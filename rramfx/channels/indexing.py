"""Per-op rules for indexing, concatenation, stacking, splitting, narrowing, permuting and expanding."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from rramfx.channels.spaces import PIN_BROADCAST, PIN_UNSUPPORTED, Layout
from rramfx.channels.values import TV

__all__ = []


class _IndexRules:
    """Mixin of `ChannelAnalysis`: getitem, cat, stack, split, narrow, permute, expand."""

    def _getitem(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        base, idx = node.args[0], node.args[1]
        v = self.val(base)
        if v is None:
            return None
        if isinstance(v, (list, tuple)):
            return v[idx] if isinstance(idx, int) else v[idx] if isinstance(idx, slice) else None
        if shape is None:
            return self.barrier(node, "indexing that does not return a tensor")
        items = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
            return self.barrier(node, "indexing with tensors or sizes computed at run time")
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        expanded: list[Any] = []
        for i in items:
            if i is Ellipsis:
                expanded.extend([slice(None)] * (len(v.shape) - n_real))
            else:
                expanded.append(i)
        expanded.extend([slice(None)] * (len(v.shape) - sum(1 for i in expanded if i is not None)))
        dims: list[Layout] = []
        d = 0
        slices: list[tuple[int, Layout, Layout]] = []
        for pos, i in enumerate(expanded):
            if i is None:
                dims.append(self.fixed_dims([1], node, "new axis")[0])
                continue
            n = v.shape[d]
            if isinstance(i, int):
                self.S.pin_layout(v.dims[d], PIN_UNSUPPORTED, f"indexed with an integer at node '{node.name}'")
            elif isinstance(i, slice):
                start, stop, step = i.indices(n)
                if step != 1:
                    self.S.pin_layout(v.dims[d], PIN_UNSUPPORTED, f"strided slice at node '{node.name}'")
                    dims.append(self.fixed_dims([len(range(start, stop, step))], node, "strided slice")[0])
                elif (start, stop) == (0, n):
                    dims.append(v.dims[d])
                    if i.start is not None or i.stop is not None:  # explicit bounds: rewrite them too
                        slices.append((pos, (), v.dims[d]))
                else:
                    stop = max(stop, start)
                    head, mid, tail = (self.S.new(k, f"{node.name}.slice") if k else None
                                       for k in (start, stop - start, n - stop))
                    parts = tuple((s, 1) for s in (head, mid, tail) if s is not None)
                    self.unify(v.dims[d], parts)
                    mid_lay: Layout = ((mid, 1),) if mid is not None else ()
                    slices.append((pos, ((head, 1),) if head is not None else (), mid_lay))
                    dims.append(mid_lay if mid is not None else self.fixed_dims([0], node, "empty slice")[0])
            d += 1
        if slices:
            self.rewrites.append((node, "getitem", (expanded, slices)))
        return TV(shape, dims)

    def _dim_arg(self, node: fx.Node, pos: int, name: str, default: Any, ndim: int) -> Any:
        args = node.args
        val = args[pos] if len(args) > pos else node.kwargs.get(name, default)
        if isinstance(val, int):
            return val % ndim if ndim else val
        if isinstance(val, (list, tuple)):
            return tuple(int(v) % ndim for v in val)
        return val

    def _cat(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        tvs = [self.tv(t) for t in tensors]
        if any(t is None for t in tvs):
            return self.barrier(node, "concatenates something that is not a graph tensor")
        d = self._dim_arg(node, 1, "dim", 0, len(shape))
        dims = []
        for k in range(len(shape)):
            if k == d:
                dims.append(tuple(seg for t in tvs for seg in t.dims[k]))
            else:
                for t in tvs[1:]:
                    self.unify(tvs[0].dims[k], t.dims[k])
                dims.append(tvs[0].dims[k])
        return TV(shape, dims)

    def _stack(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        tvs = [self.tv(t) for t in tensors]
        if any(t is None for t in tvs):
            return self.barrier(node, "stacks something that is not a graph tensor")
        d = self._dim_arg(node, 1, "dim", 0, len(shape))
        for t in tvs[1:]:
            for a, b in zip(tvs[0].dims, t.dims, strict=True):
                self.unify(a, b)
        dims = list(tvs[0].dims)
        dims.insert(d, self.fixed_dims([len(tvs)], node, "stacked dimension")[0])
        return TV(shape, dims)

    def _split(self, node: fx.Node, name: str) -> Any:
        x = self.tv(node.args[0])
        metas = node.meta.get("tensor_meta")
        if x is None or not isinstance(metas, (list, tuple)) or hasattr(metas, "shape"):
            return self.barrier(node, f"{name} of something the analysis cannot read")
        shapes = [tuple(int(s) for s in m.shape) for m in metas]
        if name == "unbind":
            d = self._dim_arg(node, 1, "dim", 0, len(x.shape))
            self.S.pin_layout(x.dims[d], PIN_UNSUPPORTED, f"unbound at node '{node.name}'")
            return tuple(TV(s, [lay for k, lay in enumerate(x.dims) if k != d]) for s in shapes)
        default_dim = 0
        d = self._dim_arg(node, 2, "dim", default_dim, len(x.shape))
        if not isinstance(d, int):
            return self.barrier(node, f"{name} along a dimension computed at run time")
        pieces = [s[d] for s in shapes]
        spaces = [self.S.new(k, f"{node.name}.part{i}") if k else None for i, k in enumerate(pieces)]
        self.unify(x.dims[d], tuple((s, 1) for s in spaces if s is not None))
        out = []
        for s, sh in zip(spaces, shapes, strict=True):
            dims = list(x.dims)
            dims[d] = ((s, 1),) if s is not None else self.fixed_dims([0], node, "empty part")[0]
            out.append(TV(sh, dims))
        self.rewrites.append((node, "split", (d, [lay[d] for lay in (o.dims for o in out)])))
        return tuple(out)

    def _narrow(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("dim", "start", "length") if k in node.kwargs]
        if x is None or len(args) < 3 or not all(isinstance(a, int) for a in args[:3]):
            return self.barrier(node, "narrow by sizes computed at run time")
        d, start, length = args[0] % len(x.shape), args[1], args[2]
        n = x.shape[d]
        head, mid, tail = (self.S.new(k, f"{node.name}.part") if k else None
                           for k in (start, length, n - start - length))
        self.unify(x.dims[d], tuple((s, 1) for s in (head, mid, tail) if s is not None))
        dims = list(x.dims)
        dims[d] = ((mid, 1),)
        self.rewrites.append((node, "narrow", (d, ((head, 1),) if head is not None else (), ((mid, 1),))))
        return TV(shape, dims)

    def _permute(self, node: fx.Node, shape: tuple[int, ...], name: str) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, f"{name} of something the analysis cannot read")
        n = len(x.shape)
        rest = list(node.args[1:])
        if name == "permute":
            order = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            if not order:
                order = node.kwargs.get("dims", [])
            order = [int(o) % n for o in order]
        elif name == "t":
            order = list(range(n))[::-1]
        elif name == "movedim":
            src, dst = rest[0] % n, rest[1] % n
            order = [k for k in range(n) if k != src]
            order.insert(dst, src)
        else:
            a, b = (int(r) % n for r in rest[:2])
            order = list(range(n))
            order[a], order[b] = order[b], order[a]
        return TV(shape, [x.dims[o] for o in order])

    def _expand(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, "expand of something the analysis cannot read")
        lead = len(shape) - len(x.shape)
        dims = self.fixed_dims(shape[:lead], node, "expanded dimension")
        for k, n in enumerate(x.shape):
            if n == shape[lead + k]:
                dims.append(x.dims[k])
            else:
                self.S.pin_layout(x.dims[k], PIN_BROADCAST, f"expanded at node '{node.name}'")
                dims.append(self.fresh([shape[lead + k]], node.name, (PIN_UNSUPPORTED,
                                       f"expanded to a constant size at node '{node.name}'"))[0])
        return TV(shape, dims)
