"""Fault patterns on the cells of arrays (issue 12): rates within statistical bounds, the structure of
each pattern, per-array reproducibility, and their saved form."""

import math

import pytest
import torch

from rramfx import SA0, SA1, Clustered, FaultError, Independent, Lines
from rramfx.crossbar.patterns import draw_arrays, pattern_from_dict

TILE = (64, 64)


def _within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_independent_rates_are_binomial():
    codes = draw_arrays(Independent(sa1=0.1, sa0=0.02), 200, TILE, seed=1)
    n = codes.numel()
    assert codes.shape == (200, *TILE) and codes.dtype == torch.uint8
    assert _within(int((codes == SA1).sum()), n, 0.1) and _within(int((codes == SA0).sum()), n, 0.02)
    assert int((codes > SA0).sum()) == 0


def test_line_failures_take_whole_lines():
    codes = draw_arrays(Lines(wordline=0.05, sa0_share=0.25), 300, TILE, seed=2)
    rows = codes.amax(2)  # [arrays, rows]: the value of a row's cells, if any
    assert torch.equal(codes.amin(2), rows)  # every row is all healthy or all stuck at one value
    failed = int((rows > 0).sum())
    assert _within(failed, rows.numel(), 0.05)
    assert _within(int((rows == SA0).sum()), failed, 0.25)
    both = draw_arrays(Lines(wordline=0.05, bitline=0.03), 300, TILE, seed=3)
    row_failed, col_failed = both.amin(2) > 0, both.amin(1) > 0
    assert torch.equal(both > 0, row_failed[:, :, None] | col_failed[:, None, :])
    assert _within(int(col_failed.sum()), col_failed.numel(), 0.03)
    assert Lines(wordline=0.05, bitline=0.03).fraction == pytest.approx(1 - 0.95 * 0.97)


def test_clusters_cover_about_the_rate_in_clumps():
    rate, size = 0.08, 6.0
    codes = draw_arrays(Clustered(rate=rate, mean_size=size), 300, TILE, seed=4)
    fraction = float((codes > 0).float().mean())
    assert 0.8 * rate < fraction < 1.02 * rate  # overlaps and edges only remove cells
    faulty = codes > 0
    right = faulty[:, :, 1:] & faulty[:, :, :-1]
    assert float(right.sum() / faulty[:, :, 1:].sum()) > 0.5  # a faulty cell's neighbour: mostly faulty
    share = float(draw_arrays(Clustered(rate=0.1, mean_size=1), 50, TILE, seed=4).gt(0).float().mean())
    assert 0.75 < share / 0.1 < 1.1
    mixed = draw_arrays(Clustered(rate=0.1, mean_size=4, sa0_share=0.5), 100, TILE, seed=5)
    assert 0.35 < float((mixed == SA0).sum() / (mixed > 0).sum()) < 0.65


def test_spread_varies_the_rate_from_array_to_array():
    flat = draw_arrays(Independent(sa1=0.1), 400, TILE, seed=6).gt(0).float().mean((1, 2))
    varying = draw_arrays(Independent(sa1=0.1, spread=0.5), 400, TILE, seed=6).gt(0).float().mean((1, 2))
    binomial = math.sqrt(0.1 * 0.9 / (TILE[0] * TILE[1]))
    assert float(flat.std()) < 1.5 * binomial
    assert float(varying.std()) > 0.03  # log-normal factor: about 0.1 x 0.53
    assert abs(float(varying.mean()) - 0.1) < 0.01  # factors of mean 1
    lines = draw_arrays(Lines(wordline=0.05, spread=1.0), 400, TILE, seed=7).amin(2).gt(0).float().mean(1)
    assert float(lines.std()) > 2 * math.sqrt(0.05 * 0.95 / TILE[0])


@pytest.mark.parametrize("pattern", [Independent(0.1, 0.02, spread=0.3), Lines(0.05, 0.05, 0.5, spread=0.3),
                                     Clustered(0.1, 5, 0.3, spread=0.3)])
def test_an_arrays_codes_depend_only_on_the_seed_and_its_position(pattern):
    small, large = draw_arrays(pattern, 5, TILE, seed=9), draw_arrays(pattern, 12, TILE, seed=9)
    assert torch.equal(small, large[:5])
    assert torch.equal(draw_arrays(pattern, 5, TILE, seed=9), small)
    assert not torch.equal(draw_arrays(pattern, 5, TILE, seed=10), small)
    assert pattern_from_dict(pattern.to_dict()) == pattern


def test_rates_zero_and_one():
    assert int(draw_arrays(Independent(), 3, TILE, seed=0).sum()) == 0
    assert bool((draw_arrays(Independent(sa1=1.0), 3, TILE, seed=0) == SA1).all())
    assert bool((draw_arrays(Independent(sa0=1.0), 3, TILE, seed=0) == SA0).all())
    assert bool((draw_arrays(Lines(bitline=1.0), 2, TILE, seed=0) == SA1).all())


def test_bad_patterns_name_the_field():
    with pytest.raises(FaultError, match=r"Independent.sa1 must be in \[0, 1\]"):
        Independent(sa1=1.5)
    with pytest.raises(FaultError, match=r"sa1 \+ Independent.sa0 must be at most 1"):
        Independent(sa1=0.6, sa0=0.6)
    with pytest.raises(FaultError, match=r"Clustered.mean_size must be at least 1 cell"):
        Clustered(rate=0.1, mean_size=0.5)
    with pytest.raises(FaultError, match=r"Lines.spread must be a number in \[0, 3\]"):
        Lines(spread=-1)
    with pytest.raises(FaultError, match=r"unknown fault pattern kind 'rows'"):
        pattern_from_dict({"kind": "rows"})
    with pytest.raises(FaultError, match=r"pattern must be an rramfx fault pattern"):
        draw_arrays("independent", 1, TILE, seed=0)
