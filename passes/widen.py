"""Widening pass: multiply the hidden channel counts of a network, keeping every coupled tensor
consistent (the paper's +20% / +60% channels, traded against latency and energy).

The steps live in their own modules: `widen_layers` rewrites layers and parameters,
`widen_graph` the constant sizes in the graph, `widen_weights` holds the weight arithmetic.

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

from rramfx.channels import ChannelAnalysis, WideningPlan
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.errors import ArgumentError, PassError
from rramfx.graph.modules import eval_mode
from rramfx.graph.record import copy_graph_module, rramfx_meta
from rramfx.graph.shapes import as_args
from rramfx.passes.widen_graph import rewrite_graph
from rramfx.passes.widen_layers import LayerRewriter
from rramfx.passes.widen_remedies import apply_remedies

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
    with eval_mode(gm), torch.no_grad():
        return gm(*args)


def _refuse_crossbar(gm: fx.GraphModule) -> None:
    crossbar = [n for n, m in gm.named_modules() if isinstance(m, CrossbarLayer)]
    if crossbar:
        raise PassError(
            f"widen_channels: layer '{crossbar[0]}' is already a crossbar layer; widen before "
            "to_crossbar (rramfx.prepare runs the structural passes first)"
        )


def _check_output(gm: fx.GraphModule, args: tuple, analysis: ChannelAnalysis, plan: WideningPlan) -> float | None:
    """Run the widened graph; unless a hazard made exactness impossible, its output must be the
    original's. Returns the relative error (None when hazards apply)."""
    try:
        got = _run(gm, args)
    except Exception as e:
        raise PassError(
            f"widen_channels produced a model that does not run ({type(e).__name__}: {e}); the coupling "
            "analysis missed a constraint of this graph. Report the model, or use on_unsupported='keep' "
            "around the failing part."
        ) from e
    if plan.violated:
        return None
    error = _relative_error(got, analysis.reference)
    if not error <= PRESERVE_TOLERANCE:
        raise PassError(
            f"widen_channels: the Net2WiderNet widening changed the output (relative error {error:.2e} > "
            f"{PRESERVE_TOLERANCE:g}); an operation in this graph couples channels in a way the analysis "
            "does not model. Report the model."
        )
    return error


def _reinitialise(gm: fx.GraphModule, paths: list[str]) -> None:
    """``preserve_function=False``: the reshaped layers start afresh, as if built wide."""
    for path in paths:
        m = gm.get_submodule(path)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _kept(plan: WideningPlan) -> list[dict[str, Any]]:
    """The channel sets kept at their width, as recorded; warns when there are any."""
    kept = [{"producers": k.producers, "channels": k.size, "reason": k.reason} for k in plan.kept]
    if kept:
        listing = "; ".join(f"{', '.join(k['producers'][:2]) or '?'} ({k['reason']})" for k in kept[:5])
        more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        warnings.warn(
            f"widen_channels kept {len(kept)} set(s) of channels at their width: {listing}{more}. "
            "See rramfx_meta(gm)['widen']['kept'].",
            stacklevel=4,
        )
    return kept


def _record(gm: fx.GraphModule, settings: dict[str, Any], params_before: int, changes: dict, kept: list,
            plan: WideningPlan, error: float | None) -> None:
    params_after = _param_count(gm)
    factor = settings["factor"]
    rramfx_meta(gm)["widen"] = {
        **settings,
        "params_before": params_before,
        "params_after": params_after,
        "layers": changes,
        "kept": kept,
        "inexact": [f"node '{h.node}': {h.what}" for h in plan.violated],
        "max_relative_error": error,
        "summary": (
            f"widen x{factor:g}: {len(changes)} layers/tensors reshaped, params {params_before:,} -> "
            f"{params_after:,} (x{params_after / max(params_before, 1):.2f})"
            + (f", {len(kept)} channel set(s) kept" if kept else "")
        ),
    }


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
    _refuse_crossbar(gm)
    args = as_args(example_inputs)
    params_before = _param_count(gm)
    analysis = ChannelAnalysis(gm, args)
    plan = WideningPlan(analysis, float(factor), divisor, bool(preserve_function), on_unsupported)
    layers = LayerRewriter(gm, analysis, plan)
    layers.modules()
    layers.params()
    rewrite_graph(gm, analysis, plan)
    remedied = apply_remedies(gm, analysis, plan)
    gm.recompile()
    gm.graph.lint()
    error = _check_output(gm, args, analysis, plan)
    if not preserve_function:
        _reinitialise(gm, layers.reshaped)
    settings = {"factor": float(factor), "divisor": divisor, "preserve_function": bool(preserve_function),
                "remedied": remedied}
    _record(gm, settings, params_before, layers.changes, _kept(plan), plan, error)
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
