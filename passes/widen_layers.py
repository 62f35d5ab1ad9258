"""Rewriting the layers of a widened graph: convolution, linear and norm modules, and parameters read
with get_attr, from the index maps of a `rramfx.channels.WideningPlan`."""

from __future__ import annotations

import torch
from torch import fx, nn

from rramfx.channels import ChannelAnalysis, Layout, WideningPlan
from rramfx.errors import PassError
from rramfx.graph.modules import effective_weight, set_scaled_std_weight, standardisation
from rramfx.passes.widen_weights import set_param, split_copies, std_split, take

__all__ = ["LayerRewriter"]


class LayerRewriter:
    """Rewrites every layer and parameter whose channels the plan widens.

    ``changes`` (path → {"in"/"out"/"channels"/"shape": (old, new)}) and ``reshaped`` (the
    convolution and linear layers whose weights changed shape) describe what it did.
    """

    def __init__(self, gm: fx.GraphModule, analysis: ChannelAnalysis, plan: WideningPlan) -> None:
        self.gm, self.a, self.p = gm, analysis, plan
        self.changes: dict[str, dict[str, tuple]] = {}
        self.reshaped: list[str] = []

    def maps(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """The plan's index map of ``layout`` (source element and number of copies)."""
        return self.p.index_map(layout)

    def note(self, path: str, key: str, layout: Layout) -> None:
        """Record a layer dimension's old and new size when it changed."""
        old, new = self.p.old_size_of(layout), self.p.size_of(layout)
        if old != new:
            self.changes.setdefault(path, {})[key] = (old, new)

    def modules(self) -> None:
        """Every layer module the analysis recorded, by its kind (conv, linear, bn, gn, ln, prelu)."""
        for path, use in self.a.modules.items():
            if any(self.p.changed(lay) for lay in use.layouts.values() if lay is not None):
                getattr(self, f"_{use.kind}")(path, self.gm.get_submodule(path), use.layouts)

    @torch.no_grad()
    def _conv_weight(self, m: nn.Module, lays: dict[str, Layout], out_idx: torch.Tensor) -> None:
        in_lay = lays.get("in_group", lays["in"])
        in_idx, counts = (None, None) if "depthwise" in lays else self.maps(in_lay)
        kind = standardisation(m)
        if kind == "std" and in_idx is not None and self.p.changed(in_lay):
            set_param(m, "weight", std_split(m, out_idx, in_idx, counts))
        elif kind == "scaled":
            target = take(effective_weight(m).detach(), 0, out_idx)
            set_scaled_std_weight(m, target if in_idx is None else split_copies(target, 1, in_idx, counts))
        else:
            weight = take(m.weight.detach(), 0, out_idx)
            set_param(m, "weight", weight if in_idx is None else split_copies(weight, 1, in_idx, counts))

    @torch.no_grad()
    def _conv(self, path: str, m: nn.Module, lays: dict[str, Layout]) -> None:
        out_idx, _ = self.maps(lays["out"])
        new_in = self.p.size_of(lays["in"])
        self._conv_weight(m, lays, out_idx)
        if m.bias is not None:
            set_param(m, "bias", take(m.bias.detach(), 0, out_idx))
        groups = new_in if "depthwise" in lays else m.groups
        m.in_channels, m.out_channels, m.groups = new_in, self.p.size_of(lays["out"]), groups
        self.note(path, "in", lays["in"])
        self.note(path, "out", lays["out"])
        self.reshaped.append(path)

    @torch.no_grad()
    def _linear(self, path: str, m: nn.Linear, lays: dict[str, Layout]) -> None:
        out_idx, _ = self.maps(lays["out"])
        in_idx, counts = self.maps(lays["in"])
        set_param(m, "weight", split_copies(take(m.weight.detach(), 0, out_idx), 1, in_idx, counts))
        if m.bias is not None:
            set_param(m, "bias", take(m.bias.detach(), 0, out_idx))
        m.in_features, m.out_features = self.p.size_of(lays["in"]), self.p.size_of(lays["out"])
        self.note(path, "in", lays["in"])
        self.note(path, "out", lays["out"])
        self.reshaped.append(path)

    @torch.no_grad()
    def _per_channel(self, m: nn.Module, names: tuple[str, ...], index: torch.Tensor) -> None:
        for name in names:
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor) and t.dim() >= 1:
                set_param(m, name, take(t.detach(), 0, index))

    def _bn(self, path: str, m: nn.Module, lays: dict[str, Layout]) -> None:
        self._per_channel(m, ("weight", "bias", "running_mean", "running_var"), self.maps(lays["c"])[0])
        m.num_features = self.p.size_of(lays["c"])
        self.note(path, "channels", lays["c"])

    def _gn(self, path: str, m: nn.GroupNorm, lays: dict[str, Layout]) -> None:
        self._per_channel(m, ("weight", "bias"), self.maps(lays["c"])[0])
        m.num_channels = self.p.size_of(lays["c"])
        if lays.get("groups") is not None:
            m.num_groups = self.p.size_of(lays["groups"])
        self.note(path, "channels", lays["c"])

    @torch.no_grad()
    def _ln(self, path: str, m: nn.LayerNorm, lays: dict[str, Layout]) -> None:
        keys = sorted(k for k in lays if k.startswith("n"))
        for name in ("weight", "bias"):
            t = getattr(m, name, None)
            if t is None:
                continue
            t = t.detach()
            for d, key in enumerate(keys):
                t = take(t, d, self.maps(lays[key])[0])
            set_param(m, name, t)
        m.normalized_shape = tuple(self.p.size_of(lays[k]) for k in keys)
        for k in keys:
            self.note(path, "channels", lays[k])

    def _prelu(self, path: str, m: nn.PReLU, lays: dict[str, Layout]) -> None:
        self._per_channel(m, ("weight",), self.maps(lays["c"])[0])
        m.num_parameters = self.p.size_of(lays["c"])
        self.note(path, "channels", lays["c"])

    @torch.no_grad()
    def params(self) -> None:
        """Parameters and buffers read with get_attr (LayerScale gammas, functional norms' affine
        parameters, fixed filters): copied per channel, like a norm layer's."""
        for name, dims in self.a.params.items():
            owner_path, _, attr = name.rpartition(".")
            if owner_path in self.a.modules:
                raise PassError(
                    f"widen_channels: '{name}' is read directly and also belongs to layer '{owner_path}'; "
                    "the pass cannot rewrite a weight used both ways"
                )
            if not any(self.p.changed(lay) for lay in dims.values()):
                continue
            owner = self.gm.get_submodule(owner_path) if owner_path else self.gm
            t = getattr(owner, attr).detach()
            for d, lay in dims.items():
                if self.p.changed(lay):
                    t = take(t, d, self.maps(lay)[0])
            self.changes.setdefault(name, {})["shape"] = (tuple(getattr(owner, attr).shape), tuple(t.shape))
            set_param(owner, attr, t)
