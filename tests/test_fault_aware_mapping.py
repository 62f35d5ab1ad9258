"""Fault-aware mapping (`rramfx.fault_aware_map`): hand-computed placements on one 2x2 array, the same
function as the naive mapping on a healthy chip, never more damage than the naive mapping, spare
columns, a chip too small, and the cost model's price for spare columns."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import rramfx
from rramfx.crossbar.aware import mapping_damage, tile_damage
from rramfx.crossbar.encodings import read_cells
from rramfx.crossbar.patterns import Independent
from rramfx.errors import ArgumentError, CostError, FaultError

from .tiny import TinyNet, loaders

HW2 = rramfx.Hardware(tile=(2, 2))


def _linear(weight):
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return {"fc": layer}


def _chip(cells, hardware=HW2):
    return rramfx.Chip(torch.tensor([cells], dtype=torch.uint8), hardware)


# unrolled matrix M[row = input, col = output] = W[out, in]: M = [[0.1, 3.0], [5.0, 0.2]]
W = [[0.1, 5.0], [3.0, 0.2]]


def test_one_sa1_cell_meets_the_smallest_weight():
    layers, chip = _linear(W), _chip([[0, 0], [1, 0]])  # SA1 under M[1, 0] = 5.0 in the naive mapping
    m = rramfx.fault_aware_map(layers, chip)
    assert m.arrays.tolist() == [0] and m.rows.tolist() == [[1, 0]] and m.cols.tolist() == [[0, 1]]
    codes = chip.fault_set(layers, m)["fc"]
    assert codes.tolist() == [[1, 0], [0, 0]]  # in logical coordinates: W[0, 0] = 0.1 is the stuck one
    damage = tile_damage(layers, m.base)
    assert mapping_damage(damage, chip) == pytest.approx(5.0 / 8.3)  # relative to the layer's sum |w|
    assert mapping_damage(damage, chip, m) == pytest.approx(0.1 / 8.3)


def test_one_sa0_cell_meets_the_largest_weight():
    layers, chip = _linear(W), _chip([[2, 0], [0, 0]])  # SA0 reads 5.0 with the weight's sign
    m = rramfx.fault_aware_map(layers, chip)
    assert m.rows.tolist() == [[1, 0]] and m.cols.tolist() == [[0, 1]]
    read = read_cells(layers["fc"].weight, chip.fault_set(layers, m)["fc"], HW2)
    assert torch.equal(read, layers["fc"].weight)  # 5.0 stuck at 5.0: nothing lost


def test_tiles_go_to_the_healthiest_arrays():
    layers = _linear(W)
    chip = rramfx.Chip(torch.tensor([[[1, 1], [1, 1]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]], dtype=torch.uint8), HW2)
    m = rramfx.fault_aware_map(layers, chip)
    assert m.arrays.tolist() == [1] and m.moved()["tiles_moved"] == 1
    assert int(chip.fault_set(layers, m)["fc"].sum()) == 0


def test_spare_column_replaces_a_dead_column():
    hw = rramfx.Hardware(tile=(2, 2), spare_columns=1)
    layers = _linear([[4.0, 5.0], [3.0, 6.0]])
    chip = _chip([[1, 0, 0], [1, 0, 0]], hw)  # physical column 0 dead, spare column 2 healthy
    naive = chip.fault_set(layers)["fc"]
    assert naive.tolist() == [[1, 1], [0, 0]]  # the naive mapping uses column 0 and never the spare
    m = rramfx.fault_aware_map(layers, chip)
    assert 2 in m.cols[0].tolist() and 0 not in m.cols[0].tolist() and m.moved()["spare_cols_used"] == 1
    assert int(chip.fault_set(layers, m)["fc"].sum()) == 0


def _model():
    torch.manual_seed(0)
    return rramfx.prepare(TinyNet(), rramfx.Policy(), example_inputs=torch.randn(2, 1, 12, 12))


def test_healthy_chip_same_function_and_mapping_is_routing_only():
    hw = rramfx.Hardware(tile=(16, 16), spare_columns=4)
    gm, (_, test) = _model(), loaders(n_train=64, n_test=64)
    layers = rramfx.crossbar_layers(gm)
    needed = rramfx.crossbar_map(gm, hw).arrays
    faulty = rramfx.Chip.draw(Independent(sa1=0.1, sa0=0.05), needed + 2, hw, seed=1)
    m = rramfx.fault_aware_map(layers, faulty)
    assert m.moved()["rows_rerouted"] > 0
    for t in range(len(m.arrays)):  # a permutation of rows, distinct columns: pure routing
        assert sorted(m.rows[t].tolist()) == list(range(16)) and len(set(m.cols[t].tolist())) == 16
    healthy = rramfx.Chip.healthy(needed + 2, hw)
    assert all(int(c.sum()) == 0 for c in healthy.fault_set(layers, m).values())
    x = torch.randn(4, 1, 12, 12)
    gm.eval()
    with torch.no_grad():
        plain = gm(x)
        rramfx.apply_chip(gm, healthy, m)
        assert torch.equal(gm(x), plain)
        rramfx.clear_faults(gm)
    assert rramfx.evaluate_on_chip(gm, healthy, test, mapping="aware") == rramfx.evaluate(gm, test)


@pytest.mark.parametrize("encoding", ["single", "differential", "bit_sliced"])
def test_never_more_damage_than_naive(encoding):
    hw = rramfx.Hardware(tile=(16, 16), encoding=encoding, spare_columns=4)
    layers = rramfx.crossbar_layers(_model())
    needed = rramfx.crossbar_map(_model(), hw).arrays
    for seed in range(3):
        chip = rramfx.Chip.draw(Independent(sa1=0.08, sa0=0.04), needed, hw, seed=seed)
        m = rramfx.fault_aware_map(layers, chip)
        damage = tile_damage(layers, m.base)
        assert mapping_damage(damage, chip, m) <= mapping_damage(damage, chip) + 1e-9
        if encoding == "single":  # the additive damage is exact: the read weights themselves, per layer
            true = {}
            for name, mapping in (("naive", None), ("aware", m)):
                faults = chip.fault_set(layers, mapping)
                true[name] = sum(float(((read_cells(w, faults[p], hw) - w).abs().sum() / w.abs().sum()).detach())
                                 for p, w in ((p, layer.weight) for p, layer in layers.items()))
            assert true["aware"] < true["naive"]
            assert true["aware"] == pytest.approx(mapping_damage(damage, chip, m), rel=1e-5)


def test_chip_too_small_and_bad_arguments():
    gm = _model()
    hw = rramfx.Hardware(tile=(16, 16))
    layers = rramfx.crossbar_layers(gm)
    needed = rramfx.crossbar_map(gm, hw).arrays
    with pytest.raises(FaultError, match=f"needs {needed} arrays"):
        rramfx.fault_aware_map(layers, rramfx.Chip.healthy(needed - 1, hw))
    with pytest.raises(ArgumentError, match="mapping must be"):
        rramfx.apply_chip(gm, rramfx.Chip.healthy(needed, hw), "clever")
    other = rramfx.fault_aware_map(_linear(W), _chip([[0, 0], [1, 0]]))
    with pytest.raises(FaultError, match="other layers"):
        rramfx.Chip.healthy(needed, hw).fault_set(layers, other)


def test_spare_columns_field_and_cost():
    with pytest.raises(CostError, match="spare_columns"):
        rramfx.Hardware(spare_columns=-1)
    base = rramfx.Hardware()
    assert "spare_columns" not in base.to_dict() and base.physical_tile == (128, 128)
    spare = dataclasses.replace(base, spare_columns=8)
    assert rramfx.Hardware.from_dict(spare.to_dict()) == spare and spare.column_overhead == 136 / 128
    gm, x = _model(), torch.randn(1, 1, 12, 12)
    plain, wide = rramfx.estimate_cost(gm, x, base), rramfx.estimate_cost(gm, x, spare)
    tiles = plain.per_device["rram"].tiles
    assert wide.per_device["rram"].tiles == tiles and plain.spare_cells == 0
    assert wide.spare_cells == tiles * 128 * 8 and wide.rram_cells == tiles * 128 * 136
    assert wide.per_device["rram"].energy_j == pytest.approx(plain.per_device["rram"].energy_j * 136 / 128)
    assert wide.per_device["rram"].latency_s == plain.per_device["rram"].latency_s
    chip = rramfx.Chip.draw(Independent(sa1=0.1), 2, dataclasses.replace(base, tile=(8, 8), spare_columns=2))
    assert tuple(chip.codes.shape) == (2, 8, 10)
    assert np.array_equal(rramfx.Chip.from_dict(chip.to_dict()).codes.numpy(), chip.codes.numpy())
