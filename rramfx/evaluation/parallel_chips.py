"""Monte-Carlo over several processes: the chips of a run split into contiguous blocks, each block one
`rramfx.engines` task that calls `monte_carlo(..., first=...)` in a worker, the per-chip accuracies put
back together in chip order.

Chip ``i`` is still drawn from ``chip_seed(seed, i)`` and every worker evaluates it on the same batches
as a serial run, so the result is `monte_carlo`'s, chip for chip (run on the same number of torch
threads for a guarantee: a convolution may round differently when its work is split over another
number of threads). Each task receives the model pickled (a GraphModule pickles with its generated code
and its weights) and the loader's batches, read here once; a worker process starts, imports rramfx and
unpickles them in about a second, so blocks are as few as workers, each worth many chips.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from torch import fx

from rramfx.checks import unit_rate
from rramfx.crossbar.faults import BaseFaultModel
from rramfx.engines.base import Engine, Task, available_cores, positive_count
from rramfx.engines.local import LocalEngine
from rramfx.errors import RramfxError
from rramfx.evaluation.chips import MonteCarloResult, check_chip_args, chip_index, monte_carlo, split_batch

__all__ = ["chip_blocks", "parallel_monte_carlo"]


def chip_blocks(first: int, trials: int, blocks: int) -> list[range]:
    """Chips ``first`` .. ``first + trials - 1`` as at most ``blocks`` contiguous ranges, in order, whose
    sizes differ by at most one (no range is empty)."""
    size, extra = divmod(trials, min(blocks, trials))
    ranges, start = [], first
    for b in range(min(blocks, trials)):
        stop = start + size + (b < extra)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def chip_block(gm: fx.GraphModule, batches: list[Any], fault_model: BaseFaultModel, chips: range, seed: int,
               fault_rate: float | None) -> MonteCarloResult:
    """One task: `monte_carlo` on the chips of ``chips`` (run in a worker on its own copy of ``gm``)."""
    return monte_carlo(gm, batches, fault_model, len(chips), seed, fault_rate=fault_rate, first=chips.start,
                       progress=False)


def parallel_monte_carlo(
    gm: fx.GraphModule,
    loader: Iterable[Any],
    fault_model: BaseFaultModel,
    trials: int = 100,
    seed: int = 0,
    *,
    workers: int | None = None,
    threads: int | None = None,
    fault_rate: float | None = None,
    first: int = 0,
    engine: Engine | None = None,
    progress: bool = True,
) -> MonteCarloResult:
    """`monte_carlo` of ``gm`` on chips ``first`` .. ``first + trials - 1``, split into ``workers``
    contiguous blocks evaluated in parallel; the same `MonteCarloResult` (``seconds`` is the wall time).

    ``workers`` (default: the cores available) processes of the local engine each compute on ``threads``
    torch threads (default: the cores available // ``workers``, at least 1), so workers × threads = the
    cores. ``engine``: run the blocks on this `rramfx.engines.Engine` instead (one with no other tasks
    pending; it is not closed here, its own
    workers and threads apply, ``workers`` still sets the number of blocks). ``gm`` and ``loader`` are
    left untouched; a block that fails raises `RramfxError` with the worker's traceback.
    """
    check_chip_args("parallel_monte_carlo", gm, fault_model, trials, seed)
    first = chip_index("first", first)
    cores = available_cores()
    workers = positive_count("workers", workers, cores)
    threads = positive_count("threads", threads, max(1, cores // workers))
    if fault_rate is not None:
        fault_rate = unit_rate("fault_rate", fault_rate)
    start = time.perf_counter()
    batches = [split_batch(batch) for batch in loader]  # the batches every chip of a serial run sees
    blocks = chip_blocks(first, trials, workers)
    own = engine is None
    runner = LocalEngine(workers, threads) if engine is None else engine
    results: dict[str, MonteCarloResult] = {}
    bar = _bar(trials) if progress else None
    try:
        for chips in blocks:
            runner.submit(Task(f"chips {chips.start}-{chips.stop - 1}", chip_block,
                               (gm, batches, fault_model, chips, seed, fault_rate), cpus=threads))
        for outcome in runner.completed():
            if not outcome.ok:
                raise RramfxError(f"parallel_monte_carlo: the block of {outcome.key} failed in its worker:\n"
                                  f"{outcome.error}")
            results[outcome.key] = outcome.value
            if bar is not None:
                bar.update(outcome.value.trials)
    finally:
        if own:
            runner.close()
        if bar is not None:
            bar.close()
    ordered = [results[f"chips {c.start}-{c.stop - 1}"] for c in blocks]
    accuracies = tuple(acc for r in ordered for acc in r.accuracies)
    return dataclasses.replace(ordered[0], accuracies=accuracies, seconds=time.perf_counter() - start, first=first)


def _bar(trials: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=trials, desc="chips", unit="chip", leave=False, disable=None)
