"""A sweep on every engine: the serial, local and Ray engines give the same rows; a worker killed mid-
sweep, a failing cell and a re-run leave the same results as an uninterrupted sweep; changing only
the evaluation settings evaluates the trained models anew without training them again."""

import functools
import json
import os
from pathlib import Path

import pytest

import rramfx
from rramfx.cli import main
from rramfx.errors import CellsFailedError
from rramfx.experiment.config import SweepConfig

from .tiny import TinyNet, loaders

CONFIG = SweepConfig(model="tiny", dataset="synthetic", drop_rates=(0.0, 0.3), fault_rates=(0.0, 0.2),
                     seeds=(0,), trials=3, epochs=1, recal_batches=1)


def _same(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def _sweep(out, config=CONFIG, model_fn=TinyNet, **kwargs):
    return rramfx.sweep(config, out, loaders=loaders(n_train=128, n_test=64), model_fn=model_fn, progress=False,
                        log=None, **kwargs)


@functools.cache
def _reference(tmp: str) -> list[dict]:
    return _sweep(Path(tmp), engine="serial")


def die_once(marker: str) -> TinyNet:
    """TinyNet, but the first call (no marker file yet) kills its process like an out-of-memory kill."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return TinyNet()


def fail_once(marker: str) -> TinyNet:
    """TinyNet, but the first call raises (a bug or a lost node the re-run does not meet)."""
    if not os.path.exists(marker):
        Path(marker).touch()
        raise RuntimeError("this cell fails the first time")
    return TinyNet()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _reference(str(tmp_path_factory.mktemp("serial")))


def test_local_engine_equals_serial_even_when_a_worker_dies(reference, tmp_path):
    assert len(reference) == 4 and {r["trials"] for r in reference} == {3}
    assert _same(_sweep(tmp_path / "local", engine="local", workers=2, threads=1)) == _same(reference)
    killed = _sweep(tmp_path / "killed", model_fn=functools.partial(die_once, str(tmp_path / "died")),
                    engine="local", workers=2, threads=1)
    assert (tmp_path / "died").is_file() and _same(killed) == _same(reference)


def test_failed_cell_is_reported_and_rerun_completes(reference, tmp_path):
    out, lines = tmp_path / "run", []
    model_fn = functools.partial(fail_once, str(tmp_path / "failed"))
    with pytest.raises(CellsFailedError) as info:
        rramfx.sweep(CONFIG, out, loaders=loaders(n_train=128, n_test=64), model_fn=model_fn, engine="serial",
                     progress=False, log=lines.append)
    # the first train cell failed, and its two evaluate cells with it; the other drop rate finished
    assert len(info.value.failed) == 3 and info.value.failed[0] == "train drop=0 seed=0"
    assert any("this cell fails the first time" in line and "Traceback" in line for line in lines)
    assert len(list((out / "cells").glob("*.json"))) == 2
    assert _same(_sweep(out, model_fn=model_fn, engine="serial")) == _same(reference)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(r["train_seconds"] > 0 for r in rows)  # a reloaded model keeps its training time


def test_new_evaluation_settings_reuse_the_trained_models(reference, tmp_path):
    out = tmp_path / "run"
    _sweep(out, engine="serial")
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    more = _sweep(out, SweepConfig(**{**CONFIG.to_dict(), "trials": 5, "fault_rates": (0.1,)}), engine="serial")
    assert {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()} == stamps  # not trained again
    assert len(more) == 2 and {r["trials"] for r in more} == {5}
    again = _sweep(out, engine="serial")  # back to the first settings: their cells are on disk
    assert _same(again) == _same(reference)


@pytest.mark.xdist_group("ray")
def test_ray_engine_equals_serial(reference, tmp_path):
    assert _same(_sweep(tmp_path, engine="ray", workers=2, threads=1)) == _same(reference)


def test_cli_sweep_reads_a_config_file_and_flags_override_it(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('model = "mini_mobilenet_1"\ndataset = "synthetic"\ndrop_rates = [0.0]\nfault_rates = [0.1]\n'
                      "seeds = [0]\ntrials = 2\nepochs = 1\nrecal_batches = 1\ntrain_subset = 64\ntest_subset = 32\n")
    out = tmp_path / "run"
    assert main(["sweep", "--config", str(config), "--trials", "3", "--out", str(out), "--quiet",
                 "--engine", "serial", "--device", "cpu"]) == 0
    stored = json.loads((out / "results.json").read_text())
    assert stored["config"]["trials"] == 3 and stored["config"]["epochs"] == 1
    assert stored["config"]["model"] == "mini_mobilenet_1" and len(stored["rows"]) == 1
    assert "| p = 0 |" in capsys.readouterr().out
    # --trials 4 then 8 into the same folder: the trained model is reused, untouched; 8 chips per cell
    assert main(["sweep", "--config", str(config), "--trials", "4", "--out", str(out), "--quiet",
                 "--engine", "serial", "--device", "cpu"]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    assert main(["sweep", "--config", str(config), "--trials", "8", "--out", str(out), "--quiet",
                 "--engine", "serial", "--device", "cpu"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()} == stamps and stamps
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["trials"] for r in rows] == [8]
    # the same 8 chips in cells of 3, 3 and 2 chips (another chip seed, so they are evaluated anew)
    assert main(["sweep", "--config", str(config), "--trials", "8", "--chip-seed", "5", "--chips-per-cell", "3",
                 "--out", str(out), "--quiet", "--engine", "serial", "--device", "cpu"]) == 0
    blocked = json.loads((out / "results.json").read_text())["rows"]
    assert [r["trials"] for r in blocked] == [8] and blocked[0]["accuracies"] != rows[0]["accuracies"]
    assert not list((out / "cells").glob("*_chips*"))


def test_training_speed_options_reach_every_training(tmp_path):
    options = SweepConfig(compile=True, channels_last=True, precision="fp32").train_settings().options
    assert (options.compile, options.channels_last, options.precision) == (True, True, "fp32")
    with pytest.raises(rramfx.SweepError, match="SweepConfig.precision must be one of"):
        SweepConfig(precision="fp16")
    # a folder written before these settings existed resumes as if they had their defaults
    stored = {k: v for k, v in CONFIG.to_dict().items() if k not in ("compile", "channels_last", "precision")}
    (tmp_path / "results.json").write_text(json.dumps({"config": stored, "rows": []}))
    assert len(_sweep(tmp_path, engine="serial")) == 4
    with pytest.raises(rramfx.SweepError, match="channels_last: False there, True now"):
        _sweep(tmp_path, SweepConfig(**{**CONFIG.to_dict(), "channels_last": True}), engine="serial")


def test_chips_split_into_blocks_give_the_same_rows_and_resume_by_block(reference, tmp_path):
    out = tmp_path / "blocks"
    lines = []
    rows = rramfx.sweep(CONFIG, out, loaders=loaders(n_train=128, n_test=64), model_fn=TinyNet, progress=False,
                        log=lines.append, engine="serial", chips_per_cell=2)
    assert _same(rows) == _same(reference)  # chips 0-1 and 2 of every fault rate, put together
    assert sum("over chips 0-1" in line for line in lines) == 4 and sum("over chips 2-2" in line for line in lines) == 4
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert len(cells) == 4 and not any("_chips" in name for name in cells)  # blocks merged into whole cells
    # A run cut short after one block: only the missing block is evaluated, and the row is the same.
    from rramfx.experiment.stages import SweepJob, cell_path, evaluate_stage

    job = SweepJob(CONFIG, str(out), "cpu", loaders(n_train=128, n_test=64), TinyNet)
    cell_path(job, 0.3, 0, 0.2).unlink()
    evaluate_stage(job, 0.3, 0, 0.2, (0, 2))
    lines.clear()
    again = rramfx.sweep(CONFIG, out, loaders=loaders(n_train=128, n_test=64), model_fn=TinyNet, progress=False,
                         log=lines.append, engine="serial", chips_per_cell=2)
    evaluated = [line for line in lines if "fault rate" in line]
    assert len(evaluated) == 1 and evaluated[0].startswith("drop rate 0.3, seed 0, fault rate 0.2: ")
    assert evaluated[0].endswith("over chips 2-2") and _same(again) == _same(reference)
    with pytest.raises(rramfx.errors.ArgumentError, match="chips_per_cell"):
        rramfx.sweep(CONFIG, out, loaders=loaders(), model_fn=TinyNet, engine="serial", chips_per_cell=0)


def test_merge_blocks_finds_a_covering_chain_among_overlapping_blocks():
    from rramfx.experiment.stages import merge_blocks

    def block(first, accs):
        return {"drop_rate": 0.1, "fault_rate": 0.2, "seed": 0, "first": first, "trials": len(accs), "samples": 10,
                "clean_accuracy": 0.9, "train_seconds": 1.0, "eval_seconds": 1.0, "accuracies": accs}

    # an interrupted run in blocks of 3 left chips 0-2; a run in blocks of 4 then did 0-3 and 4-7
    rows = [block(0, [0.1, 0.2, 0.3]), block(0, [0.1, 0.2, 0.3, 0.4]), block(4, [0.5, 0.6, 0.7, 0.8])]
    merged = merge_blocks(rows, 8)
    assert merged["accuracies"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] and merged["trials"] == 8
    assert merged["accuracy"] == pytest.approx(0.45) and merged["eval_seconds"] == 2.0
    assert merge_blocks(rows[:1] + rows[2:], 8) is None  # chip 3 is missing
    assert merge_blocks(rows, 9) is None
