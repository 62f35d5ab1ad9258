"""Sweeps: a tiny sweep on synthetic data writes every output and resumes without recomputing; the
report renders tables and plots from results.json; the CLI runs both."""

import json
import math

import pytest

import rramfx
import rramfx.experiment.cells as cells_module
from rramfx.cli import main
from rramfx.experiment.grid import SweepConfig, SweepError
from rramfx.experiment.report import best_drop_rates, markdown_table, summarize

from .tiny import TinyNet, loaders

CONFIG = SweepConfig(model="tiny", dataset="synthetic", drop_rates=(0.0, 0.3), fault_rates=(0.0, 0.2),
                     seeds=(0, 1), trials=3, epochs=2, recal_batches=2)
PNG = b"\x89PNG\r\n\x1a\n"


def _run(out, config=CONFIG):
    return rramfx.sweep(config, out, loaders=loaders(n_train=256, n_test=128), model_fn=TinyNet, engine="serial",
                        progress=False, log=None)


def test_tiny_sweep_writes_everything_and_resumes(tmp_path, monkeypatch):
    rows = _run(tmp_path)
    assert len(rows) == 8
    assert {(r["drop_rate"], r["fault_rate"], r["seed"]) for r in rows} == {
        (d, f, s) for d in (0.0, 0.3) for f in (0.0, 0.2) for s in (0, 1)}
    for r in rows:
        assert 0 <= r["chip_min"] <= r["accuracy"] <= r["chip_max"] <= 1 and r["trials"] == 3
        if r["fault_rate"] == 0:
            assert r["chip_std"] == 0  # no faults: every chip is the same
    for name in ("results.csv", "summary.csv", "results.md", "results.json", "heatmap.png", "best_drop_rate.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == PNG
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 9
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "drop0.3_seed0.pt", "drop0.3_seed1.pt", "drop0_seed0.pt", "drop0_seed1.pt"]
    table = (tmp_path / "results.md").read_text()
    assert "| p = 0.3 |" in table and "std over training seeds" in table

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(cells_module, "run_training", fail)
    monkeypatch.setattr(cells_module, "monte_carlo", fail)
    assert _run(tmp_path) == rows  # nothing recomputed

    calls = []
    real_mc = rramfx.monte_carlo
    monkeypatch.setattr(cells_module, "monte_carlo", lambda *a, **k: calls.append(k) or real_mc(*a, **k))
    more = _run(tmp_path, SweepConfig(**{**CONFIG.to_dict(), "fault_rates": (0.1,), "seeds": (0,)}))
    assert len(more) == 2 and len(calls) == 2  # one new cell per drop rate; the models are reloaded
    stored = json.loads((tmp_path / "results.json").read_text())
    assert len(stored["rows"]) == 10 and stored["config"]["fault_rates"] == [0.0, 0.1, 0.2]


def test_resume_refuses_a_different_sweep(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": {**CONFIG.to_dict(), "epochs": 5}, "rows": []}))
    with pytest.raises(SweepError, match="different sweep \\(epochs: 5 there, 2 now\\)"):
        _run(tmp_path)


def test_config_validation():
    with pytest.raises(SweepError, match="SweepConfig.drop_rates must be in \\[0, 1\\), got 1.0"):
        SweepConfig(drop_rates=(0.0, 1.0))
    with pytest.raises(SweepError, match="SweepConfig.trials must be a positive int"):
        SweepConfig(trials=0)
    with pytest.raises(SweepError, match="unknown sweep setting\\(s\\) epoch"):
        SweepConfig.from_dict({"epoch": 3})
    with pytest.raises(SweepError, match="Policy.conv_1x1 must be one of"):
        SweepConfig(policy={"conv_1x1": "gpu"})
    c = SweepConfig(fault_rates=(0.3, 0.1, 0.1), sa0_fraction=0.25, rram_1x1=True)
    assert c.fault_rates == (0.1, 0.3) and SweepConfig.from_dict(c.to_dict()) == c
    fm = c.fault_model(0.2)
    assert math.isclose(fm.sa1, 0.15) and math.isclose(fm.sa0, 0.05)
    assert c.cell_policy(0.3).conv_1x1 == "rram" and c.cell_policy(0.3).drop_rate == 0.3


def test_summary_table_and_best_drop_rate():
    rows = [{"drop_rate": d, "fault_rate": f, "seed": s, "accuracy": acc, "chip_std": 0.01, "clean_accuracy": 0.9}
            for (d, f, s, acc) in [(0.0, 0.0, 0, 0.90), (0.0, 0.0, 1, 0.92), (0.0, 0.2, 0, 0.40), (0.0, 0.2, 1, 0.50),
                                   (0.3, 0.0, 0, 0.88), (0.3, 0.0, 1, 0.88), (0.3, 0.2, 0, 0.80), (0.3, 0.2, 1, 0.70)]]
    summary = summarize(rows)
    cell = next(s for s in summary if s["drop_rate"] == 0.3 and s["fault_rate"] == 0.2)
    assert math.isclose(cell["accuracy"], 0.75) and math.isclose(cell["seed_std"], 0.0707106781, rel_tol=1e-6)
    assert cell["seeds"] == 2 and math.isclose(cell["chip_std"], 0.01)
    assert best_drop_rates(summary) == {0.0: 0.0, 0.2: 0.3}
    table = markdown_table(summary, "t")
    assert "| p = 0.3 | 88.00 ± 0.00 | **75.00 ± 7.07** |" in table
    assert "| p = 0 | **91.00 ± 1.41** | 45.00 ± 7.07 |" in table


def test_cli_sweep_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sweep", "--model", "mini_mobilenet_1", "--dataset", "synthetic", "--train-subset", "128",
            "--test-subset", "64", "--drop-rates", "0,0.2", "--fault-rates", "0,0.1", "--seeds", "0",
            "--trials", "2", "--epochs", "1", "--recal-batches", "1", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "drop rate 0.2, seed 0: fault-free accuracy" in text and "| p = 0.2 |" in text
    (out / "heatmap.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "heatmap.png").read_bytes()[:8] == PNG
    assert "mini_mobilenet_1 on synthetic (1 epoch, 2 chips, 1 training seed)" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "no results.json in" in capsys.readouterr().err
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 2
    assert "holds results of a different sweep (epochs: 1 there, 2 now)" in capsys.readouterr().err


def test_cli_bad_rate_list(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--model", "resnet20", "--dataset", "synthetic", "--drop-rates", "0,x", "--out", "o"])
    assert "argument --drop-rates: expected comma-separated rates" in capsys.readouterr().err


def test_structural_options_go_into_the_policy():
    c = SweepConfig(model="timm:resnet18", width=1.2, pad_shortcuts=True)
    policy = c.cell_policy(0.1)
    assert policy.widen == 1.2 and policy.pad_1x1 == ("shortcut",) and policy.drop_rate == 0.1
    assert SweepConfig(model="resnet20", width=1.2).cell_policy(0.0).widen == 1.0  # built wide instead


def test_padded_shortcuts_sweep_rebuilds_its_models(tmp_path):
    config = SweepConfig(model="resnet20", dataset="synthetic", width=0.25, pad_shortcuts=True, drop_rates=(0.2,),
                         fault_rates=(0.1,), trials=2, epochs=1, recal_batches=1, in_chans=1, num_classes=4)
    train, test = loaders(n_train=64, n_test=32, size=8)
    rows = rramfx.sweep(config, tmp_path, loaders=(train, test), progress=False, log=None)
    gm, record = rramfx.load_prepared(tmp_path / "models" / "drop0.2_seed0.pt")
    assert record["input_shape"] == [1, 8, 8] and record["policy"]["pad_1x1"] == ["shortcut"]
    placed = rramfx.placement(gm)
    assert placed["layer2.0.shortcut.0"] == "rram"
    assert gm.get_submodule("layer2.0.shortcut.0").kernel_size == (3, 3)
    assert gm.conv1.out_channels == 4  # width 0.25 of 16
    assert rramfx.monte_carlo(gm, test, rramfx.FaultModel(sa1=0.1), 2, fault_rate=0.1).trials == 2
    assert len(rows) == 1
