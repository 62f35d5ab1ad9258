"""Monte-Carlo in blocks of chips and over worker processes: the same chips, the same accuracies as one
serial run, exactly (issue 11, item 3)."""

import json

import pytest
import torch

import rramfx
from rramfx.cli import main
from rramfx.engines.serial import SerialEngine
from rramfx.errors import ArgumentError
from rramfx.evaluation.parallel_chips import chip_blocks, parallel_monte_carlo

from .tiny import loaders, trained

FM = rramfx.FaultModel(sa1=0.3)


@pytest.fixture(scope="module")
def model_and_data():
    return trained(drop_rate=0.3), loaders(n_test=64)[1]


def test_blocks_of_chips_are_the_serial_runs_chips(model_and_data):
    gm, test = model_and_data
    whole = rramfx.monte_carlo(gm, test, FM, trials=6, seed=3, fault_rate=0.3)
    head = rramfx.monte_carlo(gm, test, FM, trials=3, seed=3, fault_rate=0.3)
    tail = rramfx.monte_carlo(gm, test, FM, trials=3, seed=3, fault_rate=0.3, first=3)
    assert head.accuracies + tail.accuracies == whole.accuracies and len(set(whole.accuracies)) > 1
    assert tail.first == 3
    assert tail.chip_seeds() == whole.chip_seeds()[3:] == [rramfx.chip_seed(3, i) for i in (3, 4, 5)]


def test_two_workers_equal_the_serial_run_exactly(model_and_data):
    gm, test = model_and_data
    state = {k: v.clone() for k, v in gm.state_dict().items()}
    serial = rramfx.monte_carlo(gm, test, FM, trials=6, seed=3, fault_rate=0.3)
    parallel = parallel_monte_carlo(gm, test, FM, trials=6, seed=3, workers=2, threads=1, fault_rate=0.3)
    assert parallel.accuracies == serial.accuracies and parallel.mean == serial.mean
    assert torch.equal(torch.tensor(parallel.accuracies), torch.tensor(serial.accuracies))
    drop = {"seconds"}
    assert {k: v for k, v in parallel.to_dict().items() if k not in drop} == \
        {k: v for k, v in serial.to_dict().items() if k not in drop}
    assert all(torch.equal(v, state[k]) for k, v in gm.state_dict().items())  # the model is left as given


def test_blocks_on_another_engine_and_from_another_first_chip(model_and_data):
    gm, test = model_and_data
    serial = rramfx.monte_carlo(gm, test, FM, trials=4, seed=1, fault_rate=0.3, first=2)
    with SerialEngine() as engine:
        blocks = parallel_monte_carlo(gm, test, FM, trials=4, seed=1, workers=3, fault_rate=0.3, first=2,
                                      engine=engine)
    assert blocks.accuracies == serial.accuracies and blocks.first == 2 and blocks.chip_seeds() == serial.chip_seeds()


def test_chip_blocks_are_contiguous_and_balanced():
    assert chip_blocks(0, 6, 2) == [range(0, 3), range(3, 6)]
    assert chip_blocks(5, 7, 3) == [range(5, 8), range(8, 10), range(10, 12)]
    assert chip_blocks(0, 2, 4) == [range(0, 1), range(1, 2)]


@pytest.mark.parametrize("kwargs,name", [({"workers": 0}, "workers"), ({"workers": True}, "workers"),
                                         ({"workers": 2.0}, "workers"), ({"threads": -1}, "threads"),
                                         ({"first": -1}, "first")])
def test_bad_counts_are_argument_errors_naming_them(model_and_data, kwargs, name):
    gm, test = model_and_data
    with pytest.raises(ArgumentError, match=f"^{name} must be"):
        parallel_monte_carlo(gm, test, FM, trials=2, **kwargs)
    if name == "first":
        with pytest.raises(ArgumentError, match="^first must be"):
            rramfx.monte_carlo(gm, test, FM, trials=2, first=-1)


def test_cli_workers_equal_the_serial_evaluation(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", "--model", "mini_mobilenet_1", "--dataset", "synthetic", "--train-subset", "128",
                 "--test-subset", "64", "--epochs", "1", "--drop-rate", "0.2", "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    common = [str(out), "--trials", "4", "--fault-rates", "0.2", "--test-subset", "64", "--recalibrate",
              "--recal-batches", "1", "--quiet", "--json", "--device", "cpu"]
    assert main(["evaluate", *common]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main(["evaluate", *common, "--workers", "2", "--threads", "1"]) == 0
    parallel = json.loads(capsys.readouterr().out)
    assert [r["accuracies"] for r in parallel] == [r["accuracies"] for r in serial]
    assert len(serial[0]["accuracies"]) == 4
    assert [r["mean"] for r in parallel] == [r["mean"] for r in serial]
    assert main(["evaluate", *common, "--channels-last"]) == 0  # another layout, the same chips' answers
    assert [r["accuracies"] for r in json.loads(capsys.readouterr().out)] == [r["accuracies"] for r in serial]
    with pytest.raises(SystemExit) as exit_info:  # refused when the flags are parsed, before any work
        main(["evaluate", *common, "--workers", "0"])
    assert exit_info.value.code == 2
    assert "argument --workers: must be an integer >= 1, got '0'" in capsys.readouterr().err
