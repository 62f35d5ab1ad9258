"""p' measured on the chip (`rramfx.crossbar.measured_fault_rates`, ``evaluate_on_chip(fault_rate=
"measured")``): the weight magnitude each layer's stuck cells take away, exact on hand-made codes, the SA1
rate in expectation under the naive mapping, far less under a fault-aware one."""

import pytest
import torch

import rramfx
from rramfx.crossbar import measured_fault_rates
from rramfx.crossbar.patterns import Independent
from rramfx.errors import ArgumentError

from .tiny import TinyNet, loaders


def _prepared():
    torch.manual_seed(0)
    return rramfx.prepare(TinyNet(), rramfx.Policy(), example_inputs=torch.randn(2, 1, 12, 12))


def test_exact_on_a_fault_set_and_healthy_layers_left_out():
    gm = _prepared()
    layers = rramfx.crossbar_layers(gm)
    w = layers["conv1"].weight.detach()
    codes = torch.zeros(w.shape, dtype=torch.uint8)
    codes.view(-1)[::3] = rramfx.crossbar.SA1  # every third weight read as 0
    rramfx.apply_faults(gm, rramfx.FaultSet({"conv1": codes}, rramfx.FaultModel(sa1=0.1), seed=None))
    rates = measured_fault_rates(gm)
    assert set(rates) == {"conv1"}  # conv2 is healthy
    assert rates["conv1"] == pytest.approx(float(w.view(-1)[::3].abs().sum() / w.abs().sum()), rel=1e-6)


def test_naive_near_sa1_rate_aware_far_below_and_evaluation_uses_it():
    gm = _prepared()
    hardware = rramfx.Hardware(tile=(16, 16))
    arrays = rramfx.crossbar_map(gm, hardware).arrays
    chip = rramfx.Chip.draw(Independent(sa1=0.2), arrays + 2, hardware, seed=3)
    rramfx.apply_chip(gm, chip)
    naive = measured_fault_rates(gm)
    rramfx.apply_chip(gm, chip, "aware")
    aware = measured_fault_rates(gm)
    rramfx.clear_faults(gm)
    assert all(0.1 < r < 0.3 for r in naive.values()), naive  # 0.2 in expectation, 72 and 1,152 weights
    assert all(a < 0.5 * n for a, n in zip(aware.values(), naive.values(), strict=True)), (naive, aware)
    _, test = loaders()
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    measured = rramfx.evaluate_on_chip(gm, chip, test, fault_rate="measured")
    assert all(torch.equal(v, before[k]) for k, v in gm.state_dict().items())
    for m in rramfx.crossbar_layers(gm).values():  # the same as setting each layer's p' by hand
        assert m.fault_codes is None
    rramfx.apply_chip(gm, chip)
    for path, m in rramfx.crossbar_layers(gm).items():
        m.fault_rate = naive[path]
    assert measured == rramfx.evaluate(gm, test)
    with pytest.raises(ArgumentError, match="'measured'"):
        rramfx.evaluate_on_chip(gm, chip, test, fault_rate="measure")
