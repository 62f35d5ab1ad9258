"""BatchNorm recalibration for an expected fault rate: the paper's Algorithm 1 ("UpdateVar").

A network trained with DropConnect at rate p has BatchNorm running statistics that match inputs
produced by weights dropped at rate p. On a chip with SA1 rate p' ≠ p (or with the 1/(1-p') scale and
no faults at all) those statistics are off. Algorithm 1 re-estimates them: with every weight frozen,
the RRAM layers apply DropConnect at p' and the training data is passed through once, BatchNorm
layers in training mode. Here the running statistics are reset first and accumulated as a
cumulative (equal-weight) average over the batches, so the result does not depend on BN momentum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import chain, islice
from typing import Any

import torch
from torch import fx, nn

from rramfx.checks import unit_rate
from rramfx.crossbar.chip import crossbar_layers
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.data.batches import check_batch_fits, loader_classes, split_batch
from rramfx.errors import ArgumentError, FaultError, NotPreparedError
from rramfx.graph.modules import module_device


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """Module path → BatchNorm layer that tracks running statistics."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}


@torch.no_grad()
def recalibrate_bn(
    gm: fx.GraphModule,
    loader: Iterable[Any],
    fault_rate: float,
    batches: int | None = None,
    *,
    seed: int = 0,
    scale: bool = True,
    progress: bool = True,
) -> fx.GraphModule:
    """Re-estimate ``gm``'s BatchNorm statistics for the expected fault rate ``fault_rate`` (p').

    Changes ``gm`` in place, on purpose, and returns it: its BatchNorm running means and variances
    are replaced by the cumulative average over ``batches`` batches of ``loader`` (all of them for
    None) passed with DropConnect at p' on the RRAM layers; nothing else is updated (no gradients,
    no parameter changes). Dropout and other layers run in eval mode meanwhile. Afterwards ``gm`` is
    in eval mode with its inference scale set to 1/(1-p') (``fault_rate`` = p'), and its training
    drop rate and BN momentum are as before. The DropConnect masks are drawn from ``seed`` without
    touching torch's global random state. Raises `FaultError` if a chip is applied: Algorithm 1
    prepares for the expected fault rate, not for one chip (call `clear_faults` first).

    ``scale=False`` is the ablation without the inference scale: the surviving weights are not
    multiplied by 1/(1-p') while the statistics are gathered, and the model is left with p' = 0 (no
    scale at inference), so BatchNorm alone absorbs the weights' lost magnitude.
    """
    fault_rate, layers = _check_args(gm, fault_rate, batches)
    norms = batchnorm_layers(gm)
    seen = _pass_batches(gm, loader, batches, seed, module_device(gm), f"BN recalibration p'={fault_rate:g}",
                         progress, lambda: _recalibrating(gm, layers, norms, fault_rate, scale))
    if norms and seen == 0:
        raise ArgumentError("recalibrate_bn: loader yielded no batches")
    for m in layers.values():
        m.fault_rate = fault_rate if scale else 0.0
    return gm


def _check_args(gm: Any, fault_rate: Any, batches: Any) -> tuple[float, dict[str, CrossbarLayer]]:
    """Validate `recalibrate_bn`'s arguments; returns p' and the model's crossbar layers."""
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(f"recalibrate_bn: gm must be a prepared torch.fx.GraphModule, got {type(gm).__name__}")
    fault_rate = unit_rate("fault_rate", fault_rate)
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 1):
        raise ArgumentError(f"batches must be a positive int or None (the whole loader), got {batches!r}")
    layers = crossbar_layers(gm)
    faulty = [path for path, m in layers.items() if m.fault_codes is not None]
    if faulty:
        raise FaultError(
            f"a chip is applied to this model ({len(faulty)} RRAM layers have faults, e.g. '{faulty[0]}'); "
            "recalibrate_bn prepares for the expected fault rate, not one chip: call rramfx.clear_faults(gm) first"
        )
    return fault_rate, layers


@contextmanager
def _recalibrating(gm: nn.Module, layers: dict[str, CrossbarLayer], norms: dict[str, nn.Module],
                   fault_rate: float, scale: bool) -> Iterator[None]:
    """Algorithm 1's state for the ``with`` block: everything in eval mode except DropConnect at p' on
    the RRAM layers (without the 1/(1-p') scale when not ``scale``) and BatchNorm layers accumulating
    fresh statistics as an equal-weight average. Afterwards the drop rates, weights and BN momenta are
    as before and ``gm`` is in eval mode, also when the block raises."""
    saved_drop = {path: (m.drop_rate, m.train_faults) for path, m in layers.items()}
    saved_momentum = {path: m.momentum for path, m in norms.items()}
    saved_weight = {} if scale else {path: m.weight.detach().clone() for path, m in layers.items()}
    try:
        gm.eval()
        for m in layers.values():
            m.drop_rate, m.train_faults = fault_rate, None  # Algorithm 1 recalibrates under DropConnect
            m.train()
            if not scale:  # DropConnect multiplies the kept weights by 1/(1-p'): cancel it
                m.weight.mul_(1.0 - fault_rate)
        for m in norms.values():
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
            m.train()
        yield
    finally:
        for path, m in layers.items():
            m.drop_rate, m.train_faults = saved_drop[path]
            if path in saved_weight:
                m.weight.copy_(saved_weight[path])
        for path, m in norms.items():
            m.momentum = saved_momentum[path]
        gm.eval()


def _pass_batches(gm: nn.Module, loader: Iterable[Any], batches: int | None, seed: int, device: torch.device,
                  desc: str, progress: bool, state: Callable[[], AbstractContextManager[None]]) -> int:
    """Run ``batches`` batches of ``loader`` (all for None) through ``gm`` in the context ``state()``,
    with torch's generator seeded from ``seed`` inside a forked random state; returns how many batches
    ran. The first batch is checked against ``gm`` (`check_batch_fits`) before ``state`` is entered."""
    devices = [device.index or 0] if device.type == "cuda" else []
    seen = 0
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        it = iter(loader if batches is None else islice(loader, batches))
        first = next(it, None)
        if first is None:
            return 0
        check_batch_fits(gm, first, classes=loader_classes(loader), where="loader")
        it = chain([first], it)
        if progress:
            from tqdm.auto import tqdm

            total = batches if batches is not None else (len(loader) if hasattr(loader, "__len__") else None)
            it = tqdm(it, total=total, desc=desc, unit="batch", leave=False, disable=None)
        with state():
            for batch in it:
                x = batch if isinstance(batch, torch.Tensor) else split_batch(batch)[0]
                gm(x.to(device, non_blocking=True))
                seen += 1
    return seen


__all__ = ["batchnorm_layers", "recalibrate_bn"]
