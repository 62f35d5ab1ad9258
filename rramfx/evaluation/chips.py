"""Monte-Carlo evaluation on simulated chips: the accuracy a trained model keeps on fault-prone RRAM.

One simulated chip is one fault set, drawn once and applied to every batch of the test set (faults
are fixed per chip); the model is evaluated on ``trials`` chips and the spread is reported, never a
single draw. Chip ``i`` of a run started from ``seed`` is the one ``inject_faults(gm, fault_model,
seed=chip_seed(seed, i))`` draws, so the ONNX/onnxruntime side can evaluate the very same chips.

Speed: a chip costs one draw of its fault codes plus one corrupted copy of each RRAM weight, computed
once and used for all batches (the crossbar layers would otherwise re-corrupt and rescale every weight
on every forward pass); the test batches are kept on the model's device across chips when they fit in
``cache_bytes``; correct answers are counted on the device and read back once per chip; the corrupted
weights are written into one buffer per layer, reused by every chip; on a GPU, or where torch computes
on fewer threads than the process has cores, the next chip's codes are drawn on another thread while
the current chip is evaluated. The whole run costs about ``trials`` plain evaluations (see
benchmarks/monte_carlo.py).
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import fx, nn

from rramfx.checks import trials_and_seed, unit_rate
from rramfx.crossbar.chip import apply_faults, crossbar_layers
from rramfx.crossbar.faults import BaseFaultModel, FaultModel, FaultSet, chip_seed, draw_fault_set
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.data.batches import check_batch_fits, loader_classes, split_batch
from rramfx.engines.base import available_cores
from rramfx.errors import ArgumentError, ArgumentTypeError, NotPreparedError
from rramfx.graph.modules import eval_mode, module_device
from rramfx.statistics import chip_statistics, t_quantile_975


@dataclass(frozen=True)
class MonteCarloResult:
    """Accuracy (fraction in [0, 1]) of one model on ``trials`` simulated chips.

    ``accuracies[i]`` is chip ``first + i``'s, drawn with ``chip_seed(seed, first + i)`` (``first`` is 0
    unless the run evaluated a block of chips). ``std`` is the chip-to-chip
    standard deviation (n-1); ``ci95`` the 95% confidence interval of the *mean* over chips;
    ``interval95`` the range holding the middle 95% of chips (2.5th to 97.5th percentile); they are
    `rramfx.statistics.chip_statistics` of ``accuracies``, as for `rramfx.OrtMonteCarloResult`.
    ``fault_rate`` is the p' whose 1/(1-p') scale the RRAM weights were given.
    """

    accuracies: tuple[float, ...]
    seed: int
    fault_model: dict[str, Any]
    fault_rate: float
    samples: int
    rram_layers: int
    seconds: float
    first: int = 0
    mean: float = field(init=False)
    std: float = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)
    ci95: tuple[float, float] = field(init=False)
    interval95: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        if not self.accuracies:
            raise ArgumentError("accuracies: a Monte-Carlo result needs at least one trial")
        stats = chip_statistics(self.accuracies)
        for f in fields(stats):
            object.__setattr__(self, f.name, getattr(stats, f.name))

    @property
    def trials(self) -> int:
        return len(self.accuracies)

    def chip_seeds(self) -> list[int]:
        """The seed of every chip, for ``inject_faults(gm, fault_model, seed=...)``."""
        return [chip_seed(self.seed, self.first + i) for i in range(self.trials)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready), the derived statistics included."""
        d = asdict(self)
        d["accuracies"] = list(self.accuracies)
        d["ci95"], d["interval95"] = list(self.ci95), list(self.interval95)
        d["trials"] = self.trials
        return d

    def __str__(self) -> str:
        return (f"{100 * self.mean:.2f}% ± {100 * self.std:.2f} over {self.trials} chips "
                f"(min {100 * self.min:.2f}, max {100 * self.max:.2f}, 95% CI of mean "
                f"{100 * self.ci95[0]:.2f}–{100 * self.ci95[1]:.2f})")


# ---- plain evaluation ----------------------------------------------------------------------------


def _count_correct(model: nn.Module, batches: Iterable[Any], device: torch.device,
                   check: bool = False) -> tuple[torch.Tensor, int]:
    """Correct answers and samples over ``batches``; ``check``: `check_batch_fits` on the first batch."""
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for batch in batches:
        if check:
            check_batch_fits(model, batch, classes=loader_classes(batches), where="loader")
            check = False
        x, y = split_batch(batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
        total += int(y.shape[0])
    return correct, total


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any]) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over ``loader``, on the model's device.

    Whatever chip is applied to a prepared model counts: with no faults this is the fault-free
    accuracy. Every submodule's train/eval flag is restored afterwards.
    """
    with eval_mode(model):
        correct, total = _count_correct(model, loader, module_device(model), check=True)
    if total == 0:
        raise ArgumentError("loader yielded no samples")
    return correct.item() / total


# ---- Monte-Carlo ---------------------------------------------------------------------------------


class BatchCache:
    """The loader's batches on the device, kept after the first pass while they fit in ``limit`` bytes."""

    def __init__(self, loader: Iterable[Any], device: torch.device, limit: int):
        self.loader, self.device, self.limit = loader, device, limit
        self.dataset = getattr(loader, "dataset", None)
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.batches is not None:
            yield from self.batches
            return
        kept: list[tuple[torch.Tensor, torch.Tensor]] | None = []
        size = 0
        for batch in self.loader:
            x, y = split_batch(batch)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if kept is not None:
                size += x.numel() * x.element_size() + y.numel() * y.element_size()
                if size <= self.limit:
                    kept.append((x, y))
                else:
                    kept = None
            yield x, y
        if kept is not None:
            self.batches = kept


def _baked(layers: dict[str, CrossbarLayer],
           buffers: dict[str, torch.Tensor]) -> list[tuple[CrossbarLayer, torch.Tensor]]:
    """Give each faulty layer its corrupted, rescaled eval weight as a plain weight, so the forward
    pass does no per-batch fault work; returns what `_unbake` needs to put the clean weights back.
    The read weights are written into ``buffers`` (one per layer, made at the first chip and reused by
    the next: fresh arrays of 11 M weights cost resnet18 ~15 ms of page faults per chip)."""
    swapped = []
    for path, layer in layers.items():
        if layer.fault_codes is None:
            continue
        clean = layer.weight.data
        if path not in buffers:  # the weights of one run keep their shape, dtype and device
            buffers[path] = torch.empty_like(clean, memory_format=torch.contiguous_format)
        effective = layer.faulty_read(out=buffers[path])
        layer.weight.data = effective
        layer.fault_codes = None  # the layer now computes plainly with the chip's weight
        swapped.append((layer, clean))
    return swapped


def _unbake(swapped: list[tuple[CrossbarLayer, torch.Tensor]]) -> None:
    for layer, clean in swapped:
        layer.weight.data = clean


def monte_carlo(
    gm: fx.GraphModule,
    loader: Iterable[Any],
    fault_model: BaseFaultModel,
    trials: int = 100,
    seed: int = 0,
    *,
    fault_rate: float | None = None,
    cache_bytes: int = 2 << 30,
    progress: bool = True,
    first: int = 0,
) -> MonteCarloResult:
    """Evaluate a prepared model on ``trials`` simulated chips drawn from ``fault_model`` and ``seed``.

    The chips are ``first``, ..., ``first + trials - 1`` (chip ``i`` from ``chip_seed(seed, i)``), so a
    run can be split into blocks of chips whose accuracies, put together, are the whole run's
    (`rramfx.evaluation.parallel_chips` evaluates the blocks in parallel processes).

    ``fault_rate`` is the expected fault rate p' whose 1/(1-p') scale faulty RRAM weights get; None
    keeps the one the model has (from its policy, `set_fault_rate` or `recalibrate_bn`). A model whose
    p' is 0 evaluated under SA1 faults warns: without the scale, faulty accuracy collapses.

    Runs on the model's device; the loader's batches are moved there. ``gm`` is returned to the state
    it was given in (mode, weights, applied chip, p'). A model with no RRAM layer, or a fault model
    that draws no faults, is evaluated once and that accuracy reported for every chip.
    """
    check_chip_args("monte_carlo", gm, fault_model, trials, seed)
    first = chip_index("first", first)
    layers = crossbar_layers(gm)
    if fault_rate is not None:
        fault_rate = unit_rate("fault_rate", fault_rate)
    device = module_device(gm)
    saved = {path: (m.fault_codes, m.fault_model, m.fault_rate) for path, m in layers.items()}
    start = time.perf_counter()
    with eval_mode(gm):
        try:
            if fault_rate is not None:
                for m in layers.values():
                    m.fault_rate = fault_rate
            p_prime = fault_rate if fault_rate is not None else _common_fault_rate(layers)
            _warn_unscaled(fault_model, p_prime, layers)
            if not layers or draws_no_faults(fault_model):
                for m in layers.values():
                    m.fault_codes, m.fault_model = None, None
                with torch.no_grad():
                    correct, total = _count_correct(gm, loader, device, check=True)
                accuracies = [correct.item() / max(total, 1)] * trials
            else:
                accuracies, total = _run_chips(gm, layers, loader, fault_model, range(first, first + trials), seed,
                                               device, cache_bytes, progress)
            if total == 0:
                raise ArgumentError("loader yielded no samples")
        finally:
            for path, m in layers.items():
                m.fault_codes, m.fault_model, m.fault_rate = saved[path]
    return MonteCarloResult(tuple(accuracies), seed, fault_model.to_dict(), float(p_prime if layers else 0.0),
                            total, len(layers), time.perf_counter() - start, first)


def check_chip_args(what: str, gm: Any, fault_model: Any, trials: Any, seed: Any) -> None:
    """The checks every Monte-Carlo style evaluation (``what``) makes of its model, fault model, number
    of chips and seed, the same types wherever they are made: a model rramfx did not make raises
    `NotPreparedError`, a fault model of another class `ArgumentTypeError`, a bad count or seed
    `ArgumentError`, each naming the argument."""
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(f"{what}: gm must be a prepared torch.fx.GraphModule (what rramfx.prepare "
                               f"returns), got {type(gm).__name__}")
    if not isinstance(fault_model, BaseFaultModel):
        raise ArgumentTypeError(f"fault_model must be an rramfx.FaultModel, got {type(fault_model).__name__}")
    trials_and_seed(trials, seed)


def chip_index(name: str, value: Any) -> int:
    """``value`` checked as the index of a chip (an int >= 0); else `ArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArgumentError(f"{name} must be an int >= 0 (the index of the first chip), got {value!r}")
    return value


def _run_chips(gm: fx.GraphModule, layers: dict[str, CrossbarLayer], loader: Iterable[Any],
               fault_model: BaseFaultModel, chips: range, seed: int, device: torch.device, cache_bytes: int,
               progress: bool) -> tuple[list[float], int]:
    batches = BatchCache(loader, device, cache_bytes)
    buffers: dict[str, torch.Tensor] = {}
    accuracies: list[float] = []
    total = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chips), desc="chips", unit="chip", leave=False, disable=None)

    def draw(i: int) -> FaultSet:
        return draw_fault_set(layers, fault_model, chip_seed(seed, i))

    # Draw the next chip on another thread while this one is evaluated (NumPy's draw releases the GIL)
    # where that slows the evaluation down little: on a GPU, whose kernels leave the CPU idle, or
    # beside a torch that computes on fewer threads than the process has cores.
    spare = device.type != "cpu" or torch.get_num_threads() < available_cores()
    pool = concurrent.futures.ThreadPoolExecutor(1) if spare and len(chips) > 1 else None
    try:
        pending = pool.submit(draw, chips[0]) if pool else None
        for i in chips:
            faults = pending.result() if pending else draw(i)
            if pool and i + 1 < chips.stop:
                pending = pool.submit(draw, i + 1)
            apply_faults(gm, faults)  # the same chip inject_faults(gm, fault_model, chip_seed(seed, i)) gives
            with torch.no_grad():
                swapped = _baked(layers, buffers)
                try:
                    correct, total = _count_correct(gm, batches, device, check=i == 0)
                finally:
                    _unbake(swapped)
            accuracies.append(correct.item() / max(total, 1))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(mean=f"{100 * statistics.fmean(accuracies):.2f}%")
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    return accuracies, total


def _common_fault_rate(layers: dict[str, CrossbarLayer]) -> float:
    rates = {m.fault_rate for m in layers.values()}
    return rates.pop() if len(rates) == 1 else max(rates, default=0.0)


def draws_no_faults(fault_model: BaseFaultModel) -> bool:
    """Whether every chip of ``fault_model`` is the fault-free one (a `FaultModel` of rate 0), so a
    Monte-Carlo run evaluates once and reports that accuracy for every chip."""
    return isinstance(fault_model, FaultModel) and fault_model.sa1 == 0 and fault_model.sa0 == 0


def _warn_unscaled(fault_model: BaseFaultModel, p_prime: float, layers: dict[str, CrossbarLayer]) -> None:
    if layers and p_prime == 0 and isinstance(fault_model, FaultModel) and fault_model.sa1 > 0:
        warnings.warn(
            f"monte_carlo: the model's expected fault rate p' is 0 while the chips have {fault_model.sa1:.0%} "
            "SA1 cells, so RRAM weights get no 1/(1-p') scale and accuracy will be far below what the "
            "method achieves. Pass fault_rate=, or call rramfx.recalibrate_bn(gm, loader, fault_rate) or "
            "rramfx.set_fault_rate(gm, p') first.",
            stacklevel=3,
        )


__all__ = ["MonteCarloResult", "chip_index", "draws_no_faults", "evaluate", "monte_carlo", "t_quantile_975"]
