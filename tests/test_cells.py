"""Experiment cells: `rramfx train`, `rramfx evaluate` and the sweep compute the same numbers through
`train_cell` and `evaluate_cell`, and a cell's result depends on its key only (not on which cells ran
before it), so a resumed sweep equals an uninterrupted one."""

import json

import pytest
import torch

import rramfx
from rramfx.cli import main
from rramfx.data import ImageLoader, load_dataset
from rramfx.experiment.cells import (
    CellData,
    Chips,
    DataSpec,
    Recalibration,
    TrainKey,
    cell_policy,
    evaluate_cell,
    train_cell,
)
from rramfx.experiment.grid import SweepConfig
from rramfx.models.recipe import ModelRecipe
from rramfx.training.loop import TrainOptions

CONFIG = SweepConfig(model="mini_mobilenet_1", dataset="synthetic", drop_rates=(0.2,), fault_rates=(0.1, 0.2),
                     seeds=(1,), trials=3, chip_seed=5, epochs=2, lr=0.05, recal_batches=2, train_subset=256,
                     test_subset=512)
CLI_DATA = ["--dataset", "synthetic", "--train-subset", "256", "--test-subset", "512"]


def _key(config=CONFIG, drop=0.2, seed=1):
    return TrainKey(ModelRecipe(config.model, num_classes=4, in_chans=1, width=config.width), drop, seed)


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def _rows(rows):
    return {(r["drop_rate"], r["fault_rate"], r["seed"]): {k: v for k, v in r.items() if "seconds" not in k}
            for r in rows}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, rramfx.sweep(CONFIG, out, progress=False, log=None)


def test_sweep_rows_are_train_cell_then_evaluate_cell(swept):
    out, rows = swept
    data = CellData(CONFIG.train_settings().data)
    trained = train_cell(_key(), CONFIG.train_settings(), data)
    gm, record = rramfx.load_prepared(out / "models" / "drop0.2_seed1.pt")
    _same_weights(trained.gm.state_dict(), gm.state_dict())
    assert record["info"]["clean_accuracy"] == trained.clean_accuracy and record["input_shape"] == [1, 16, 16]
    for row in rows:
        result = evaluate_cell(trained.gm, row["fault_rate"], Chips(3, 5), data.test_loader,
                               recalibration=Recalibration(2, seed=1), recal_loader=data.recal_loader(1))
        assert list(result.accuracies) == row["accuracies"] and result.mean == row["accuracy"]
        assert row["clean_accuracy"] == trained.clean_accuracy


def test_cli_train_is_the_sweeps_training(swept, tmp_path, capsys):
    out, _ = swept
    model = tmp_path / "m.pt"
    assert main(["train", "--model", "mini_mobilenet_1", *CLI_DATA, "--epochs", "2", "--lr", "0.05",
                 "--drop-rate", "0.2", "--seed", "1", "--out", str(model), "--quiet", "--device", "cpu"]) == 0
    sweep_gm, sweep_record = rramfx.load_prepared(out / "models" / "drop0.2_seed1.pt")
    cli_gm, cli_record = rramfx.load_prepared(model)
    _same_weights(cli_gm.state_dict(), sweep_gm.state_dict())
    accuracy = cli_record["info"]["clean_accuracy"]
    assert accuracy == sweep_record["info"]["clean_accuracy"] and cli_record["data"]["dataset"] == "synthetic"
    assert cli_record["policy"] == sweep_record["policy"] and cli_record["model_kwargs"] == {"num_classes": 4,
                                                                                              "in_chans": 1}
    assert f"fault-free test accuracy: {100 * accuracy:.2f}% on 512 images" in capsys.readouterr().out


def test_cli_evaluate_is_the_sweeps_evaluation(tmp_path, capsys):
    config = SweepConfig(**{**CONFIG.to_dict(), "recalibrate": False})
    rows = rramfx.sweep(config, tmp_path, progress=False, log=None)
    assert main(["evaluate", str(tmp_path / "models" / "drop0.2_seed1.pt"), "--dataset", "synthetic",
                 "--test-subset", "512", "--fault-rates", "0.1,0.2", "--trials", "3", "--seed", "5", "--json",
                 "--quiet", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["accuracies"] for r in printed] == [r["accuracies"] for r in rows]
    assert [r["fault_rate"] for r in printed] == [0.1, 0.2]


def test_cli_evaluate_with_recalibration_is_evaluate_cell(swept, capsys):
    out, _ = swept
    path = out / "models" / "drop0.2_seed1.pt"
    assert main(["evaluate", str(path), "--dataset", "synthetic", "--test-subset", "512", "--fault-rates", "0.1,0.2",
                 "--trials", "3", "--recalibrate", "--recal-batches", "2", "--sa0-fraction", "0.5", "--json",
                 "--quiet", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    gm, _ = rramfx.load_prepared(path)
    test = ImageLoader(load_dataset("synthetic", "test").subset(512, seed=1), 256, in_chans=1)
    recal = ImageLoader(load_dataset("synthetic", "train"), 256, shuffle=True, in_chans=1)
    for rate, row in zip((0.1, 0.2), printed, strict=True):
        result = evaluate_cell(gm, rate, Chips(3, 0, 0.5), test, recalibration=Recalibration(2), recal_loader=recal)
        mine = {k: v for k, v in result.to_dict().items() if k != "seconds"}
        assert mine == {k: v for k, v in row.items() if k != "seconds"} and mine["fault_rate"] == rate / 2


def test_evaluate_cell_does_not_depend_on_the_cells_before_it():
    data = CellData(CONFIG.train_settings().data)
    gm = train_cell(_key(), CONFIG.train_settings(), data).gm
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    args = {"recalibration": Recalibration(2, seed=1), "recal_loader": data.recal_loader(1)}
    alone = evaluate_cell(gm, 0.2, Chips(3, 5), data.test_loader, **args)
    evaluate_cell(gm, 0.1, Chips(3, 5), data.test_loader, **args)  # reads the same loader first
    after = evaluate_cell(gm, 0.2, Chips(3, 5), data.test_loader, **args)
    assert after.accuracies == alone.accuracies and len(alone.accuracies) == 3
    _same_weights(gm.state_dict(), before)  # evaluated on a copy


def test_resumed_sweep_equals_an_uninterrupted_one(swept, tmp_path):
    _, rows = swept
    for faults in ((0.2,), (0.1, 0.2)):  # the second call adds fault rate 0.1 to a finished sweep
        resumed = rramfx.sweep(SweepConfig(**{**CONFIG.to_dict(), "fault_rates": faults}), tmp_path,
                               progress=False, log=None)
    assert _rows(resumed) == _rows(rows) and len(resumed) == 2


def test_cell_policy_and_settings():
    settings = CONFIG.train_settings()
    assert settings.options == TrainOptions(2, lr=0.05, weight_decay=5e-4, schedule="cosine")
    assert settings.data == DataSpec("synthetic", None, None, 256, 512, 128, True)
    assert settings.policy.fault_rate == 0.0 and CONFIG.recalibration(3) == Recalibration(2, 3)
    wide = SweepConfig(model="timm:resnet18", width=1.5, policy={"fault_rate": 0.1})
    policy = cell_policy(TrainKey(ModelRecipe("timm:resnet18", width=1.5), 0.3, 0), wide.base_policy())
    assert policy == wide.cell_policy(0.3) and policy.widen == 1.5 and policy.drop_rate == 0.3
    assert policy.fault_rate == 0.0  # a sweep trains for no fault rate; each cell recalibrates for its own
    assert Chips(sa0_fraction=0.25).fault_model(0.2).sa0 == pytest.approx(0.05)
    with pytest.raises(rramfx.ArgumentError, match="recal_loader must be given"):
        evaluate_cell(None, 0.1, Chips(), [], recalibration=Recalibration())


def test_channels_last_evaluate_cell_leaves_the_model_and_gives_the_same_chips(swept):
    """``channels_last`` lays out the cell's copy and its batches so; the model it was given keeps its
    layout, and the chips' accuracies are the contiguous run's (the outputs differ by float rounding)."""
    out, rows = swept
    gm, _ = rramfx.load_prepared(out / "models" / "drop0.2_seed1.pt")
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    data = CellData(CONFIG.train_settings().data)
    runs = [evaluate_cell(gm, 0.2, Chips(3, 5), data.test_loader, recalibration=Recalibration(2, seed=1),
                          recal_loader=data.recal_loader(1), channels_last=cl) for cl in (False, True)]
    assert list(runs[0].accuracies) == list(runs[1].accuracies) == rows[-1]["accuracies"]
    assert len(set(runs[0].accuracies)) > 1
    assert all(torch.equal(v, before[k]) and v.is_contiguous() for k, v in gm.state_dict().items())
    assert not gm._forward_pre_hooks


def test_channels_last_model_computes_the_contiguous_output():
    from rramfx.training.fastpath import channels_last_model

    torch.manual_seed(0)
    gm = rramfx.prepare(rramfx.models.create("resnet20", in_chans=1), rramfx.Policy()).eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        want = gm(x)
        cl = channels_last_model(gm)
        got = cl(x)
    assert cl is gm and x.is_contiguous()
    assert next(p for p in gm.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_onnxruntime_evaluate_cell_gives_the_same_chips(swept):
    """``runtime="onnxruntime"`` simulates the same chips (same seeds, scale and recalibration) in
    onnxruntime: per-chip accuracies equal to PyTorch's, the model untouched, and a fault rate of 0
    evaluated once for every chip."""
    out, rows = swept
    gm, _ = rramfx.load_prepared(out / "models" / "drop0.2_seed1.pt")
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    data = CellData(CONFIG.train_settings().data)
    args = {"recalibration": Recalibration(2, seed=1), "recal_loader": data.recal_loader(1)}
    ort = evaluate_cell(gm, 0.2, Chips(3, 5), data.test_loader, runtime="onnxruntime", threads=1, **args)
    assert list(ort.accuracies) == rows[-1]["accuracies"] and len(set(ort.accuracies)) > 1
    mine = evaluate_cell(gm, 0.2, Chips(3, 5), data.test_loader, **args).to_dict()
    assert {k: v for k, v in ort.to_dict().items() if k != "seconds"} == {k: v for k, v in mine.items()
                                                                          if k != "seconds"}
    assert ort.fault_rate == 0.2 and ort.samples == 512 and ort.rram_layers > 0
    clean = evaluate_cell(gm, 0.0, Chips(3, 5), data.test_loader, runtime="onnxruntime", **args)
    torch_clean = evaluate_cell(gm, 0.0, Chips(3, 5), data.test_loader, **args)
    assert clean.accuracies == torch_clean.accuracies and len(clean.accuracies) == 3
    _same_weights(gm.state_dict(), before)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"runtime": "tvm"}, "runtime must be one of 'torch', 'onnxruntime'"),
    ({"runtime": "onnxruntime", "workers": 2}, "workers/first: onnxruntime evaluates all the chips"),
    ({"runtime": "onnxruntime", "first": 2}, "workers/first"),
    ({"runtime": "onnxruntime", "channels_last": True}, "pass channels_last or runtime='onnxruntime'"),
])
def test_evaluate_cell_refuses_a_runtime_it_cannot_honour(swept, kwargs, match):
    out, _ = swept
    gm, _ = rramfx.load_prepared(out / "models" / "drop0.2_seed1.pt")
    with pytest.raises(rramfx.ArgumentError, match=match):
        evaluate_cell(gm, 0.2, Chips(3, 5), [], **kwargs)


def test_cli_evaluate_in_onnxruntime_is_the_torch_evaluation(swept, capsys):
    out, _ = swept
    common = ["evaluate", str(out / "models" / "drop0.2_seed1.pt"), "--dataset", "synthetic", "--test-subset", "512",
              "--fault-rates", "0.1,0.2", "--trials", "3", "--seed", "5", "--recalibrate", "--recal-batches", "2",
              "--json", "--quiet", "--device", "cpu"]
    printed = []
    for runtime in ("torch", "onnxruntime"):
        assert main([*common, "--runtime", runtime]) == 0
        printed.append(json.loads(capsys.readouterr().out))
    assert [r["accuracies"] for r in printed[0]] == [r["accuracies"] for r in printed[1]]
    assert [r["fault_rate"] for r in printed[1]] == [0.1, 0.2]
    assert main([*common, "--runtime", "onnxruntime", "--workers", "2"]) == 2
    assert "onnxruntime evaluates all the chips of a cell in one session" in capsys.readouterr().err


def test_onnxruntime_evaluate_cell_refuses_a_model_without_rram_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3))
    gm = rramfx.prepare(model, rramfx.Policy(), example_inputs=torch.randn(2, 1, 8, 8))
    with pytest.raises(rramfx.ArgumentError, match="no RRAM layer .* runtime='torch'"):
        evaluate_cell(gm, 0.2, Chips(3, 0), [(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))],
                      runtime="onnxruntime")
