"""The statistics of a set of chip accuracies, shared by the PyTorch and the onnxruntime Monte-Carlo.

A Monte-Carlo run evaluates one model on many simulated chips; what it reports is the spread over
chips, never a single draw. `chip_statistics` computes that summary once, so that
`rramfx.MonteCarloResult` and `rramfx.OrtMonteCarloResult` cannot drift apart: the mean, the
chip-to-chip standard deviation (n-1), the extremes, the 95% confidence interval of the mean
(Student's t) and the range that holds the middle 95% of chips (2.5th to 97.5th percentile).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rramfx.errors import ArgumentError

__all__ = ["ChipStatistics", "chip_statistics", "t_quantile_975"]

def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (scipy's), NaN below 1.

    ``scipy.special.stdtrit`` is what ``scipy.stats.t.ppf`` computes with (equal for df 1..20,000,
    checked), at a third of the import time (0.4 s against 1.3 s): a cost every fresh worker
    process that reports chips pays once."""
    if df < 1:
        return math.nan
    from scipy.special import stdtrit  # imported here, when a chip statistic is first asked for

    return float(stdtrit(df, 0.975))


@dataclass(frozen=True)
class ChipStatistics:
    """Summary of the accuracies of a set of chips (fractions in [0, 1]).

    ``std`` is the chip-to-chip standard deviation (n-1; 0 for one chip); ``ci95`` the 95% confidence
    interval of the *mean* over chips; ``interval95`` the range holding the middle 95% of chips."""

    mean: float
    std: float
    min: float
    max: float
    ci95: tuple[float, float]
    interval95: tuple[float, float]


def chip_statistics(accuracies: Sequence[float]) -> ChipStatistics:
    """The `ChipStatistics` of ``accuracies`` (one per chip).

    Why one function: the PyTorch and the onnxruntime Monte-Carlo results report the same figures and
    must compute them the same way. An empty sequence raises `rramfx.ArgumentError` naming the argument."""
    acc = list(accuracies)
    if not acc:
        raise ArgumentError("accuracies must hold at least one chip's accuracy, got none")
    mean = statistics.fmean(acc)
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    half = t_quantile_975(len(acc) - 1) * std / math.sqrt(len(acc)) if len(acc) > 1 else 0.0
    return ChipStatistics(mean, std, min(acc), max(acc), (mean - half, mean + half),
                          tuple(float(v) for v in np.percentile(acc, (2.5, 97.5))))
