"""Widening pass: multiply the hidden channel counts of a network, keeping every coupled tensor
consistent (the paper's +20% / +60% channels, traded against latency and energy).

The pass reads the graph's channel couplings with `rramfx.channels` (ShapeProp shapes plus a
union of coupled channel dimensions), gives every widenable set of channels a new size, and rewrites
every layer, norm, parameter and constant shape argument that touches it. It always builds the
Net2WiderNet-style widening first (new channels copy existing ones, the weights that read them are
split between the copies) and checks that the widened model computes what the original did; that
check guards the coupling analysis itself. With ``preserve_function=False`` the reshaped
convolution and linear layers are then initialised afresh, as if the network had been built wide.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import fx, nn

from rramfx.channels import ChannelAnalysis, Layout, WideningPlan
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.errors import ArgumentError, PassError
from rramfx.graph.modules import effective_weight, set_scaled_std_weight, standardisation
from rramfx.graph.record import copy_graph_module, rramfx_meta
from rramfx.graph.shapes import as_args

__all__ = ["PRESERVE_TOLERANCE", "widen_channels", "widen_channels_"]

#: Largest relative output error (max |new - old| / max |old|) accepted by the self-check of the
#: Net2WiderNet widening. Exact in real arithmetic; in float32 deep networks reach about 1e-4 (the
#: original model itself is ~2e-5 off its float64 result), while a missed coupling gives O(1) errors.
PRESERVE_TOLERANCE = 1e-3
_ON_UNSUPPORTED = ("raise", "keep")


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_args(factor: Any, divisor: Any, on_unsupported: Any) -> None:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise ArgumentError(
            f"widen_channels: factor must be a finite number >= 1 (1.5 = 50% more channels), got {factor!r}")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ArgumentError(f"widen_channels: divisor must be an integer >= 1, got {divisor!r}")
    if on_unsupported not in _ON_UNSUPPORTED:
        raise ArgumentError(f"widen_channels: on_unsupported must be one of {_ON_UNSUPPORTED}, got {on_unsupported!r}")


# ---- tensors --------------------------------------------------------------------------------------

def _take(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return t.index_select(dim, index.to(t.device))


def _split(t: torch.Tensor, dim: int, index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Net2WiderNet on the input side: copies of one channel share its weight equally."""
    shape = [1] * t.dim()
    shape[dim] = -1
    return _take(t, dim, index) / counts.to(t.device, t.dtype).view(shape)


def _set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    else:
        setattr(module, name, value.detach().clone())


def _std_split(module: nn.Module, out_idx: torch.Tensor, in_idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The raw weight of a widened StdConv2d that computes exactly what the original does.

    A standardised row always has the same variance, so plain splitting (which lowers it) cannot be
    represented. Each copy of a split weight gets an extra ±c (the copies' extras cancel, since the
    copied inputs are equal) with c chosen per row to restore the row's variance; the raw weight is
    then that row times the original row's sqrt(var + eps), which standardises back to it exactly.
    """
    w = module.weight.detach()
    eps = module.eps
    w_hat = effective_weight(module).detach()
    sigma2 = w.reshape(w.shape[0], -1).var(dim=1, unbiased=False)[out_idx.to(w.device)]
    target = _split(_take(w_hat, 0, out_idx), 1, in_idx, counts)
    # rank of each copy among the copies of the same old channel: +c, -c, +c, ... (0 for an odd last one)
    rank = torch.zeros_like(in_idx)
    seen: dict[int, int] = {}
    for j, i in enumerate(in_idx.tolist()):
        rank[j] = seen.get(i, 0)
        seen[i] = rank[j].item() + 1
    sign = torch.where(rank % 2 == 0, 1.0, -1.0)
    sign = torch.where((counts % 2 == 1) & (rank == counts - 1), 0.0, sign)
    sign = sign.to(w.dtype).to(w.device).view(1, -1, *([1] * (w.dim() - 2)))
    rows = target.reshape(target.shape[0], -1)
    fan = rows.shape[1]
    v0 = sigma2 / (sigma2 + eps)
    deficit = fan * v0 - (rows ** 2).sum(dim=1)
    n_delta = (sign != 0).sum() * math.prod(w.shape[2:])
    c = torch.sqrt(torch.clamp(deficit, min=0.0) / max(int(n_delta), 1))
    target = target + c.view(-1, *([1] * (w.dim() - 1))) * sign
    return target * torch.sqrt(sigma2 + eps).view(-1, *([1] * (w.dim() - 1)))


# ---- rewriting ------------------------------------------------------------------------------------

class _Rewriter:
    def __init__(self, gm: fx.GraphModule, analysis: ChannelAnalysis, plan: WideningPlan) -> None:
        self.gm, self.a, self.p = gm, analysis, plan
        self.changes: dict[str, dict[str, tuple[int, int]]] = {}
        self.reshaped: list[str] = []

    def maps(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        return self.p.index_map(layout)

    def note(self, path: str, key: str, layout: Layout) -> None:
        old, new = self.p.old_size_of(layout), self.p.size_of(layout)
        if old != new:
            self.changes.setdefault(path, {})[key] = (old, new)

    def modules(self) -> None:
        for path, use in self.a.modules.items():
            m = self.gm.get_submodule(path)
            lays = use.layouts
            if not any(self.p.changed(lay) for lay in lays.values()):
                continue
            getattr(self, f"_{use.kind}")(path, m, lays)

    @torch.no_grad()
    def _conv(self, path: str, m: nn.Module, lays: dict[str, Layout]) -> None:
        out_idx, _ = self.maps(lays["out"])
        new_in = self.p.size_of(lays["in"])
        kind = standardisation(m)
        if "depthwise" in lays:
            groups = new_in
            in_idx = counts = None
        else:
            in_lay = lays.get("in_group", lays["in"])
            groups = m.groups
            in_idx, counts = self.maps(in_lay)
        if kind == "std" and in_idx is not None and self.p.changed(lays.get("in_group", lays["in"])):
            weight = _std_split(m, out_idx, in_idx, counts)
            _set_param(m, "weight", weight)
        elif kind == "scaled":
            target = _take(effective_weight(m).detach(), 0, out_idx)
            if in_idx is not None:
                target = _split(target, 1, in_idx, counts)
            set_scaled_std_weight(m, target)
        else:
            weight = _take(m.weight.detach(), 0, out_idx)
            if in_idx is not None:
                weight = _split(weight, 1, in_idx, counts)
            _set_param(m, "weight", weight)
        if m.bias is not None:
            _set_param(m, "bias", _take(m.bias.detach(), 0, out_idx))
        m.in_channels, m.out_channels, m.groups = new_in, self.p.size_of(lays["out"]), groups
        self.note(path, "in", lays["in"])
        self.note(path, "out", lays["out"])
        self.reshaped.append(path)

    @torch.no_grad()
    def _linear(self, path: str, m: nn.Linear, lays: dict[str, Layout]) -> None:
        out_idx, _ = self.maps(lays["out"])
        in_idx, counts = self.maps(lays["in"])
        _set_param(m, "weight", _split(_take(m.weight.detach(), 0, out_idx), 1, in_idx, counts))
        if m.bias is not None:
            _set_param(m, "bias", _take(m.bias.detach(), 0, out_idx))
        m.in_features, m.out_features = self.p.size_of(lays["in"]), self.p.size_of(lays["out"])
        self.note(path, "in", lays["in"])
        self.note(path, "out", lays["out"])
        self.reshaped.append(path)

    @torch.no_grad()
    def _per_channel(self, m: nn.Module, names: tuple[str, ...], index: torch.Tensor) -> None:
        for name in names:
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor) and t.dim() >= 1:
                _set_param(m, name, _take(t.detach(), 0, index))

    def _bn(self, path: str, m: nn.Module, lays: dict[str, Layout]) -> None:
        idx, _ = self.maps(lays["c"])
        self._per_channel(m, ("weight", "bias", "running_mean", "running_var"), idx)
        m.num_features = self.p.size_of(lays["c"])
        self.note(path, "channels", lays["c"])

    def _gn(self, path: str, m: nn.GroupNorm, lays: dict[str, Layout]) -> None:
        idx, _ = self.maps(lays["c"])
        self._per_channel(m, ("weight", "bias"), idx)
        m.num_channels = self.p.size_of(lays["c"])
        if lays.get("groups") is not None:
            m.num_groups = self.p.size_of(lays["groups"])
        self.note(path, "channels", lays["c"])

    def _ln(self, path: str, m: nn.LayerNorm, lays: dict[str, Layout]) -> None:
        keys = sorted(k for k in lays if k.startswith("n"))
        with torch.no_grad():
            for name in ("weight", "bias"):
                t = getattr(m, name, None)
                if t is None:
                    continue
                t = t.detach()
                for d, key in enumerate(keys):
                    t = _take(t, d, self.maps(lays[key])[0])
                _set_param(m, name, t)
        m.normalized_shape = tuple(self.p.size_of(lays[k]) for k in keys)
        for k in keys:
            self.note(path, "channels", lays[k])

    def _prelu(self, path: str, m: nn.PReLU, lays: dict[str, Layout]) -> None:
        idx, _ = self.maps(lays["c"])
        self._per_channel(m, ("weight",), idx)
        m.num_parameters = self.p.size_of(lays["c"])
        self.note(path, "channels", lays["c"])

    @torch.no_grad()
    def params(self) -> None:
        """Parameters and buffers read with get_attr (LayerScale gammas, functional norms' affine
        parameters): copied per channel, like a norm layer's."""
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
                    t = _take(t, d, self.maps(lay)[0])
            _set_param(owner, attr, t)
            self.changes.setdefault(name, {})["shape"] = (tuple(getattr(owner, attr).shape), tuple(t.shape))

    def graph(self) -> None:
        for node, kind, data in self.a.rewrites:
            getattr(self, f"_g_{kind}")(node, data)

    def _g_view(self, node: fx.Node, dims: list[Layout]) -> None:
        if not any(self.p.changed(lay) for lay in dims):
            return
        args = list(node.args)
        if node.target == "unflatten" or getattr(node.target, "__name__", "") == "unflatten":
            d, sizes = args[1], list(args[2])
            d = d % len(dims)
            args[2] = type(args[2])(self._new_size(s, dims[d + k]) for k, s in enumerate(sizes))
            node.args = tuple(args)
            return
        if "shape" in node.kwargs or "size" in node.kwargs:
            key = "shape" if "shape" in node.kwargs else "size"
            kwargs = dict(node.kwargs)
            kwargs[key] = type(kwargs[key])(self._new_size(s, lay) for s, lay in zip(kwargs[key], dims, strict=True))
            node.kwargs = kwargs
            return
        if len(args) == 2 and isinstance(args[1], (list, tuple)):
            args[1] = type(args[1])(self._new_size(s, lay) for s, lay in zip(args[1], dims, strict=True))
        else:
            args[1:] = [self._new_size(s, lay) for s, lay in zip(args[1:], dims, strict=True)]
        node.args = tuple(args)

    def _new_size(self, arg: Any, layout: Layout) -> Any:
        if isinstance(arg, int) and arg != -1 and self.p.changed(layout):
            return self.p.size_of(layout)
        return arg

    def _g_getitem(self, node: fx.Node, data: tuple) -> None:
        expanded, slices = data
        if not any(self.p.changed(h) or self.p.changed(m) for _, h, m in slices):
            return
        index = list(expanded)
        for pos, head, mid in slices:
            start = self.p.size_of(head) if head else 0
            index[pos] = slice(start, start + self.p.size_of(mid), None)
        node.args = (node.args[0], tuple(index))

    def _g_split(self, node: fx.Node, data: tuple) -> None:
        d, pieces = data
        if not any(self.p.changed(lay) for lay in pieces):
            return
        sizes = [self.p.size_of(lay) for lay in pieces]
        if node.op == "call_method":
            node.target = "split"
        else:
            node.target = torch.split
        node.args = (node.args[0], sizes)
        node.kwargs = {"dim": d}

    def _g_narrow(self, node: fx.Node, data: tuple) -> None:
        d, head, mid = data
        if self.p.changed(head) or self.p.changed(mid):
            start = self.p.size_of(head) if head else 0
            node.args = (node.args[0], d, start, self.p.size_of(mid))
            node.kwargs = {}

    def _g_layer_norm(self, node: fx.Node, lays: list[Layout]) -> None:
        if not any(self.p.changed(lay) for lay in lays):
            return
        args = list(node.args)
        new = [self.p.size_of(lay) for lay in lays]
        if len(args) > 1:
            args[1] = type(args[1])(new)
            node.args = tuple(args)
        else:
            node.kwargs = {**node.kwargs, "normalized_shape": type(node.kwargs["normalized_shape"])(new)}

    def _g_group_norm(self, node: fx.Node, glay: Layout | None) -> None:
        if glay is None or not self.p.changed(glay):
            return
        args = list(node.args)
        if len(args) > 1:
            args[1] = self.p.size_of(glay)
            node.args = tuple(args)
        else:
            node.kwargs = {**node.kwargs, "num_groups": self.p.size_of(glay)}


def _relative_error(got: Any, want: Any) -> float:
    if isinstance(want, torch.Tensor):
        scale = want.abs().max().item() if want.numel() else 0.0
        diff = (got - want).abs().max().item() if want.numel() else 0.0
        return diff / max(scale, 1e-12)
    if isinstance(want, dict):
        return max((_relative_error(got[k], v) for k, v in want.items()), default=0.0)
    if isinstance(want, (list, tuple)):
        return max((_relative_error(g, w) for g, w in zip(got, want, strict=True)), default=0.0)
    return 0.0


def _run(gm: fx.GraphModule, args: tuple) -> Any:
    flags = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            return gm(*args)
    finally:
        for m, flag in flags:
            m.training = flag


def widen_channels_(
    gm: fx.GraphModule,
    factor: float,
    example_inputs: Any,
    preserve_function: bool = False,
    divisor: int = 1,
    on_unsupported: str = "raise",
) -> fx.GraphModule:
    """In-place form of `widen_channels`, for pipelines that already own their copy."""
    _check_args(factor, divisor, on_unsupported)
    crossbar = [n for n, m in gm.named_modules() if isinstance(m, CrossbarLayer)]
    if crossbar:
        raise PassError(
            f"widen_channels: layer '{crossbar[0]}' is already a crossbar layer; widen before "
            "to_crossbar (rramfx.prepare runs the structural passes first)"
        )
    args = as_args(example_inputs)
    params_before = _param_count(gm)
    analysis = ChannelAnalysis(gm, args)
    plan = WideningPlan(analysis, float(factor), divisor, bool(preserve_function), on_unsupported)
    rw = _Rewriter(gm, analysis, plan)
    rw.modules()
    rw.params()
    rw.graph()
    gm.recompile()
    gm.graph.lint()
    try:
        got = _run(gm, args)
    except Exception as e:
        raise PassError(
            f"widen_channels produced a model that does not run ({type(e).__name__}: {e}); the coupling "
            "analysis missed a constraint of this graph. Report the model, or use on_unsupported='keep' "
            "around the failing part."
        ) from e
    error = None
    if not plan.violated:
        error = _relative_error(got, analysis.reference)
        if not error <= PRESERVE_TOLERANCE:
            raise PassError(
                f"widen_channels: the Net2WiderNet widening changed the output (relative error {error:.2e} > "
                f"{PRESERVE_TOLERANCE:g}); an operation in this graph couples channels in a way the analysis "
                "does not model. Report the model."
            )
    if not preserve_function:
        for path in rw.reshaped:
            m = gm.get_submodule(path)
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    kept = [{"producers": k.producers, "channels": k.size, "reason": k.reason} for k in plan.kept]
    if kept:
        listing = "; ".join(f"{', '.join(k['producers'][:2]) or '?'} ({k['reason']})" for k in kept[:5])
        more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        warnings.warn(
            f"widen_channels kept {len(kept)} set(s) of channels at their width: {listing}{more}. "
            "See rramfx_meta(gm)['widen']['kept'].",
            stacklevel=3,
        )
    params_after = _param_count(gm)
    rramfx_meta(gm)["widen"] = {
        "factor": float(factor),
        "divisor": divisor,
        "preserve_function": bool(preserve_function),
        "params_before": params_before,
        "params_after": params_after,
        "layers": rw.changes,
        "kept": kept,
        "inexact": [f"node '{h.node}': {h.what}" for h in plan.violated],
        "max_relative_error": error,
        "summary": (
            f"widen x{factor:g}: {len(rw.changes)} layers/tensors reshaped, params {params_before:,} -> "
            f"{params_after:,} (x{params_after / max(params_before, 1):.2f})"
            + (f", {len(kept)} channel set(s) kept" if kept else "")
        ),
    }
    return gm


def widen_channels(
    gm: fx.GraphModule,
    factor: float,
    example_inputs: Any,
    preserve_function: bool = False,
    divisor: int = 1,
    on_unsupported: str = "raise",
) -> fx.GraphModule:
    """Return a copy of ``gm`` whose hidden channel counts are multiplied by ``factor``.

    Every set of coupled channel dimensions that some convolution or linear layer produces is
    widened (rounded to a multiple of ``divisor`` per layer, group structure kept: grouped and
    depthwise convolutions keep their group count or stay depthwise, GroupNorm gains whole
    groups); the model's input channels and its outputs never change. ``example_inputs`` is a batch
    the model accepts: the pass runs it to read tensor shapes.

    ``preserve_function=True`` widens Net2WiderNet-style: new channels copy existing ones and the
    weights that read them are split between the copies, so the output is unchanged (checked to a
    relative error of 1e-4). Operations that duplicated channels would change (a LayerNorm with a
    non-integer factor, a softmax or sum over channels, ECA's convolution across channels) make
    that impossible: they raise a PassError naming the node. ``preserve_function=False`` builds the
    same structure and initialises the reshaped convolution and linear layers afresh (norm layers
    keep their per-channel values), as the paper does before training a widened network.

    An operation the analysis cannot see through raises a PassError naming the node and the layers
    whose channels it touches; ``on_unsupported="keep"`` leaves those channels at their width
    instead (reported in a warning and in ``rramfx_meta(gm)["widen"]["kept"]``). The record also
    holds the parameter counts before and after and every reshaped layer. ``gm`` is not changed.
    """
    _check_args(factor, divisor, on_unsupported)
    out = copy_graph_module(gm)
    return widen_channels_(out, factor, example_inputs, preserve_function, divisor, on_unsupported)
