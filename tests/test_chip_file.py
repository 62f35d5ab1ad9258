"""Tested chips (`rramfx.Chip`): the file round trip and its checks, a model put on a chip, and a model
that needs more arrays than the chip has."""

import json

import pytest
import torch

import rramfx
from rramfx.crossbar.patterns import Independent, Lines
from rramfx.errors import FaultError, FileFormatError

from .tiny import TinyNet, loaders

HW = rramfx.Hardware(tile=(16, 16))


def _model():
    torch.manual_seed(0)
    return rramfx.prepare(TinyNet(), rramfx.Policy(), example_inputs=torch.randn(2, 1, 12, 12))


def test_round_trip_is_exact_and_damage_is_refused(tmp_path):
    chip = rramfx.Chip.draw(Lines(wordline=0.1, bitline=0.05, sa0_share=0.5), 6, HW, seed=3)
    assert chip.counts()["SA1"] > 0 and chip.counts()["SA0"] > 0
    path = chip.save(tmp_path / "chip.json")
    back = rramfx.Chip.load(path)
    assert torch.equal(back.codes, chip.codes) and back.hardware == HW and back.seed == 3
    record = json.loads(path.read_text())
    record["payload"]["header"]["rows"] = 8  # edited after writing: the checksum no longer matches
    path.write_text(json.dumps(record))
    with pytest.raises(FileFormatError, match="checksum"):
        rramfx.Chip.load(path)


def test_example_chip_file_loads():
    chip = rramfx.Chip.load("examples/chip.json")
    assert chip.codes.shape == (2, 16, 16) and chip.counts() == {"healthy": 478, "SA1": 33, "SA0": 1}
    assert bool((chip.codes[0, 7] == 1).all()) and bool((chip.codes[1, :, 12] == 1).all())


def test_model_on_a_chip_and_a_chip_too_small():
    gm, (_, test) = _model(), loaders(n_train=64, n_test=64)
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    needed = rramfx.crossbar_map(gm, HW).arrays
    healthy = rramfx.evaluate_on_chip(gm, rramfx.Chip.healthy(needed, HW), test)
    assert healthy == rramfx.evaluate(gm, test)  # single encoding, no stuck cell: the fault-free model
    broken = rramfx.Chip(torch.ones((needed, 16, 16), dtype=torch.uint8), HW)  # every cell SA1: all weights 0
    assert rramfx.evaluate_on_chip(gm, broken, test, fault_rate=0.0) != healthy or healthy <= 0.3
    assert all(torch.equal(v, before[k]) for k, v in gm.state_dict().items())  # the model is left as it was
    if needed > 1:
        with pytest.raises(FaultError, match=str(needed)):
            rramfx.evaluate_on_chip(gm, rramfx.Chip.draw(Independent(sa1=0.1), needed - 1, HW), test)
