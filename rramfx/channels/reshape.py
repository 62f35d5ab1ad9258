"""Per-op rules for view, reshape, flatten, unflatten, squeeze and unsqueeze."""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import fx

from rramfx.channels.spaces import PIN_BROADCAST, PIN_UNSUPPORTED, Layout, _Mismatch
from rramfx.channels.values import TV, Barrier

__all__ = []


class _ReshapeRules:
    """Mixin of `ChannelAnalysis`: reshapes that refine or merge channel spaces."""

    def _view(self, node: fx.Node, shape: tuple[int, ...], rewrite: bool) -> Any:
        x = self.tv(node.args[0])
        if x is None or shape is None:
            return self.barrier(node, "reshape of something the analysis cannot read")
        return self._reshape(node, x, shape, node if rewrite else None)

    def _all_pinned(self, lay: Layout) -> bool:
        return all(self.S.find(s) in self.S.pinned for s, _ in self.S.expand(lay))

    def _reshape(self, node: fx.Node, x: TV, shape: tuple[int, ...], rewrite_node: fx.Node | None) -> Any:
        """Match input and output dims into groups of equal product; within a group at most one
        dimension may carry widenable channels (the others are sizes such as H, W or a number of
        paths, which stay as they are)."""
        ins = [(k, n) for k, n in enumerate(x.shape) if n != 1]
        outs = [(k, n) for k, n in enumerate(shape) if n != 1]
        for k, n in enumerate(x.shape):
            if n == 1:
                self.S.pin_layout(x.dims[k], PIN_BROADCAST, f"size-1 dimension reshaped at node '{node.name}'")
        dims: list[Layout | None] = [None] * len(shape)
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
                    return self.barrier(node, "a reshape the analysis cannot match up")
            self._reshape_group(node, x, gi, go, dims)
        for k, n in enumerate(shape):
            if dims[k] is None:
                dims[k] = self.fixed_dims([n], node, "size-1 dimension")[0]
        if rewrite_node is not None:
            self.rewrites.append((rewrite_node, "view", list(dims)))
        return TV(shape, dims)

    def _reshape_group(self, node: fx.Node, x: TV, gi: list, go: list, dims: list) -> None:
        in_lays = [x.dims[k] for k, _ in gi]
        free = [idx for idx, lay in enumerate(in_lays) if not self._all_pinned(lay)]
        if len(gi) == 1 and len(go) == 1:
            dims[go[0][0]] = in_lays[0]
            return
        if not free:
            for k, n in go:
                dims[k] = self.fixed_dims([n], node, "reshaped dimension")[0]
            return
        if len(go) == 1:  # merge: the one channel-carrying dim, blocks of the dims after it, repeated
            if len(free) > 1:
                self.barriers.append(Barrier(node.name, "a reshape merges two channel dimensions",
                                             [in_lays[idx] for idx in free]))
                for idx in free:
                    self.S.pin_layout(in_lays[idx], PIN_UNSUPPORTED,
                                      f"merged with another channel dimension at node '{node.name}'")
            c = free[0]
            pre = math.prod(n for _, n in gi[:c])
            post = math.prod(n for _, n in gi[c + 1:])
            lay = tuple((s, inner * post) for s, inner in self.S.expand(in_lays[c]))
            dims[go[0][0]] = lay * pre
            return
        if len(gi) == 1:  # split: choose the output dim that carries the channels
            lay = in_lays[0]
            for c in reversed(range(len(go))):
                pre = math.prod(n for _, n in go[:c])
                post = math.prod(n for _, n in go[c + 1:])
                trial = copy.deepcopy(self.S)
                y = trial.new(go[c][1], "trial")
                try:
                    trial.unify(lay, ((y, post),) * pre)
                except _Mismatch:
                    continue
                y = self.S.new(go[c][1], f"{node.name}.dim{go[c][0]}")
                self.unify(lay, ((y, post),) * pre)
                for k, (od, n) in enumerate(go):
                    dims[od] = ((y, 1),) if k == c else self.fixed_dims([n], node, "reshaped dimension")[0]
                return
        self.barriers.append(Barrier(node.name, "a reshape that regroups channel dimensions", list(in_lays)))
        for lay in in_lays:
            self.S.pin_layout(lay, PIN_UNSUPPORTED, f"regrouped at node '{node.name}'")
        for k, n in go:
            dims[k] = self.fixed_dims([n], node, "reshaped dimension")[0]
