"""The statistics of a set of chip accuracies, shared by the PyTorch and the onnxruntime Monte-Carlo."""

import math
import random

import numpy as np
import pytest

import rramfx
from rramfx.errors import ArgumentError
from rramfx.evaluation.chips import MonteCarloResult
from rramfx.onnx.simulate import OrtMonteCarloResult
from rramfx.statistics import ChipStatistics, chip_statistics, t_quantile_975

FM = rramfx.FaultModel(sa1=0.1).to_dict()


def _ort(accuracies):
    n = 1 if accuracies is None else len(accuracies)
    return OrtMonteCarloResult(np.zeros((n, 4), np.int64), accuracies, tuple(range(n)), 0, FM, 0.1, 4, 0.0)


def test_figures_by_hand():
    s = chip_statistics([0.5, 0.7, 0.6, 0.8])
    assert math.isclose(s.mean, 0.65) and (s.min, s.max) == (0.5, 0.8)
    assert math.isclose(s.std, math.sqrt(((0.15**2) * 2 + (0.05**2) * 2) / 3))
    half = 3.182446 * s.std / 2  # t(3) (3.182 in printed tables) x std / sqrt(4)
    assert s.ci95 == pytest.approx((0.65 - half, 0.65 + half))
    assert s.interval95 == pytest.approx((0.5075, 0.7925))
    one = chip_statistics([0.9])
    assert one == ChipStatistics(0.9, 0.0, 0.9, 0.9, (0.9, 0.9), (0.9, 0.9))
    assert math.isnan(t_quantile_975(0))


def test_the_middle_95_percent_is_numpys_percentile():
    rng = random.Random(0)
    values = [rng.random() for _ in range(37)]
    low, high = chip_statistics(values).interval95
    assert (low, high) == (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
    assert min(values) < low < high < max(values)


def test_pytorch_and_onnxruntime_results_report_the_same_statistics():
    accuracies = (0.61, 0.58, 0.66, 0.6, 0.52, 0.7)
    torch_side = MonteCarloResult(accuracies, 0, FM, 0.1, 100, 2, 1.0)
    ort_side = _ort(accuracies)
    expected = chip_statistics(accuracies)
    assert ort_side.statistics == expected
    assert (torch_side.mean, torch_side.std, torch_side.min, torch_side.max) == \
        (expected.mean, expected.std, expected.min, expected.max)
    assert (torch_side.ci95, torch_side.interval95) == (expected.ci95, expected.interval95)
    assert (ort_side.mean, ort_side.std) == (torch_side.mean, torch_side.std)


def test_no_accuracies():
    unlabelled = _ort(None)
    assert unlabelled.statistics is None and math.isnan(unlabelled.mean) and math.isnan(unlabelled.std)
    with pytest.raises(ArgumentError, match="accuracies must hold at least one chip's accuracy"):
        chip_statistics([])
    with pytest.raises(ArgumentError, match="a Monte-Carlo result needs at least one trial"):
        MonteCarloResult((), 0, FM, 0.1, 100, 2, 1.0)


def test_t_quantile_is_scipy_stats_t_ppf_bit_for_bit():
    from scipy.stats import t as student_t

    for df in (1, 2, 3, 7, 30, 99, 100, 1000, 12345):
        assert t_quantile_975(df) == float(student_t.ppf(0.975, df))
