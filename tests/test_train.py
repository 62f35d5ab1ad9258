"""Training: it learns, DropConnect comes from the model, checkpoints resume exactly, trained models
save and load, and `rramfx train` works from the command line."""

import itertools

import pytest
import torch
from torch import nn

import rramfx
from rramfx.cli import main
from rramfx.files import load_checked_torch, save_checked_torch
from rramfx.training.loop import TrainError, TrainOptions, make_scheduler, run_training
from rramfx.training.saved import load_prepared, save_prepared

from .tiny import TinyNet, loaders


def _fresh(drop_rate=0.0):
    torch.manual_seed(0)
    return rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=drop_rate))


def test_training_learns_the_synthetic_task():
    train, test = loaders()
    gm = _fresh(0.2)
    before = rramfx.evaluate(gm, test)
    history = rramfx.train(gm, train, 4, lr=0.1, val_loader=test, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.9 and before < 0.5
    assert not gm.training  # left in eval mode
    assert all(m.drop_rate == 0.2 for m in rramfx.crossbar_layers(gm).values())  # the model's own rate


def test_dropconnect_is_the_models_and_the_seed_reproduces_it():
    train, _ = loaders(n_train=128)
    runs = []
    for drop in (0.0, 0.5, 0.5):
        gm = _fresh(drop)
        rramfx.train(gm, train, 1, progress=False, seed=3)
        runs.append(gm.state_dict()["conv1.weight"])
    assert torch.equal(runs[1], runs[2])  # same seed, same DropConnect masks
    assert not torch.allclose(runs[0], runs[1])  # DropConnect changed the gradients


def test_resumed_training_equals_uninterrupted(tmp_path):
    train, _ = loaders(n_train=192)
    straight = _fresh(0.3)
    rramfx.train(straight, train, 2, progress=False, seed=1, checkpoint=tmp_path / "a.ckpt")
    ckpt = tmp_path / "b.ckpt"
    with pytest.raises(_Crash):  # epoch 1 of a 2-epoch run finishes, then the run dies
        rramfx.train(_fresh(0.3), _CrashAfter(train, epochs=1), 2, progress=False, seed=1, checkpoint=ckpt)
    assert load_checked_torch(ckpt, "rramfx.TrainCheckpoint")[1]["epoch"] == 1
    resumed = _fresh(0.3)
    history = rramfx.train(resumed, train, 2, progress=False, seed=99, checkpoint=ckpt)
    assert [r["epoch"] for r in history] == [1, 2]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


class _Crash(Exception):
    pass


class _CrashAfter:
    """The loader it wraps, except that starting epoch ``epochs`` raises _Crash."""

    def __init__(self, loader, epochs):
        self.loader, self.epochs = loader, epochs

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        if epoch >= self.epochs:
            raise _Crash
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return iter(self.loader)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    train, _ = loaders(n_train=128)
    gm = _fresh()
    rramfx.train(gm, train, 1, progress=False, checkpoint=tmp_path / "c.ckpt")
    with pytest.raises(TrainError, match="from a run of 1 epochs × 2 batches, this one is 3 × 2"):
        rramfx.train(_fresh(), train, 3, progress=False, checkpoint=tmp_path / "c.ckpt")
    rramfx.train(_fresh(), train, 2, schedule="onecycle", progress=False, checkpoint=tmp_path / "o.ckpt")
    version, data = load_checked_torch(tmp_path / "o.ckpt", "rramfx.TrainCheckpoint")
    data["scheduler"] = {"base_lrs": [0.05], "last_epoch": 4, "_step_count": 5, "lr_lambdas": [None]}
    save_checked_torch(tmp_path / "o.ckpt", "rramfx.TrainCheckpoint", version, data)  # a LambdaLR's state
    with pytest.raises(TrainError, match="schedule of an older rramfx .* delete it to start over"):
        rramfx.train(_fresh(), train, 2, schedule="onecycle", progress=False, checkpoint=tmp_path / "o.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="not a readable rramfx.TrainCheckpoint file"):
        rramfx.train(_fresh(), train, 1, progress=False, checkpoint=tmp_path / "junk.ckpt")


def test_bad_settings():
    train, _ = loaders(n_train=64)
    with pytest.raises(rramfx.ArgumentError, match="schedule must be one of"):
        rramfx.train(_fresh(), train, 1, schedule="step")
    with pytest.raises(rramfx.ArgumentError, match="epochs must be a non-negative int"):
        rramfx.train(_fresh(), train, -1)
    with pytest.raises(rramfx.ArgumentError, match="lr must be positive"):
        rramfx.train(_fresh(), train, 1, lr=0)


def test_options_object_trains_exactly_as_the_keywords():
    train, _ = loaders(n_train=128)
    by_keywords, by_options = _fresh(0.3), _fresh(0.3)
    h1 = rramfx.train(by_keywords, train, 2, lr=0.05, schedule="onecycle", seed=2, progress=False)
    h2 = run_training(by_options, train, TrainOptions(2, lr=0.05, schedule="onecycle", seed=2), progress=False)
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2] and len(h1) == 2
    for k, v in by_keywords.state_dict().items():
        assert torch.equal(v, by_options.state_dict()[k]), k
    with pytest.raises(rramfx.ArgumentError, match="epochs must be a non-negative int, got 1.5"):
        TrainOptions(1.5)


def _lrs(schedule, total, warmup):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched, lrs = make_scheduler(opt, schedule, total, warmup), []
    for _ in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"] / 0.1)
        opt.step()
        sched.step()
    return lrs


def test_schedules():
    """torch's schedulers give the schedules rramfx documents (the former hand-written formula's values)."""
    assert _lrs("constant", 100, 0) == [1.0] * 101
    cos = _lrs("cosine", 100, 0)
    assert cos[0] == 1.0 and abs(cos[50] - 0.5) < 1e-12 and abs(cos[100]) < 1e-12
    warm = _lrs("cosine", 100, 10)
    assert [round(v, 12) for v in warm[:11]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0]
    assert abs(warm[55] - 0.5) < 1e-12 and abs(warm[100]) < 1e-12
    one = _lrs("onecycle", 100, 0)
    assert abs(one[0] - 0.04) < 1e-12 and abs(one[15] - 0.52) < 1e-12 and abs(one[30] - 1.0) < 1e-12
    assert abs(one[65] - 0.5) < 1e-12 and abs(one[100]) < 1e-12
    assert all(a >= b for a, b in itertools.pairwise(one[30:])) and all(a < b for a, b in itertools.pairwise(one[:31]))
    with pytest.raises(rramfx.ArgumentError, match="schedule must be one of"):
        make_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), "linear", 10)


def test_save_and_load_prepared(tmp_path):
    torch.manual_seed(0)
    model = rramfx.models.create("mini_mobilenet_2", in_chans=1, num_classes=4)
    gm = rramfx.prepare(model, rramfx.Policy(drop_rate=0.2, fault_rate=0.1))
    gm.train()
    gm(torch.randn(8, 1, 12, 12))  # change the BN statistics, as training would
    path = save_prepared(tmp_path / "m.pt", gm, model="mini_mobilenet_2",
                         model_kwargs={"in_chans": 1, "num_classes": 4}, info={"note": "x"})
    loaded, record = load_prepared(path)
    x = torch.randn(3, 1, 12, 12)
    assert torch.equal(loaded(x), gm.eval()(x)) and not loaded.training
    assert record["policy"]["drop_rate"] == 0.2 and record["info"] == {"note": "x"}
    assert rramfx.placement(loaded) == rramfx.placement(gm)
    with pytest.raises(TrainError, match="does not exist"):
        load_prepared(tmp_path / "none.pt")


def test_cli_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "m.pt"
    args = ["train", "--model", "mini_mobilenet_1", "--dataset", "synthetic", "--train-subset", "128",
            "--test-subset", "64", "--epochs", "1", "--drop-rate", "0.2", "--out", str(out), "--quiet",
            "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "epoch   1: loss" in text and "fault-free test accuracy" in text and out.is_file()
    assert main(["evaluate", str(out), "--trials", "3", "--fault-rates", "0,0.2", "--test-subset", "64",
                 "--recalibrate", "--recal-batches", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "3 chips per fault rate, BN recalibrated" in lines[0] and lines[1].split()[:2] == ["fault", "rate"]
    assert set(lines[2]) == {"-", " "} and [ln.split()[0] for ln in lines[3:]] == ["0", "0.2"]


@pytest.mark.parametrize("args,needle", [
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--data-dir", "/nonexistent", "--out", "x.pt"],
     "CIFAR-10 train split not found"),
    (["train", "--model", "resnet20", "--dataset", "synthetic", "--drop-rate", "1.2", "--out", "x.pt"],
     "argument --drop-rate: must be a rate in [0, 1) such as 0.1, got '1.2'"),
    (["evaluate", "/nonexistent/m.pt"], "model file '/nonexistent/m.pt' does not exist"),
])
def test_cli_errors_are_one_line(args, needle, capsys):
    try:
        code = main(args)
    except SystemExit as e:  # refused by argparse while parsing the flags
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
