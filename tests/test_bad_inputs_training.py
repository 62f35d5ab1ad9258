"""Issue 13, training: a bad first batch, a checkpoint of another model, a diverged run or an interrupt
leaves the prepared model exactly as it was (weights, buffers, training flags), with an rramfx error that
names the culprit."""

import pytest
import torch

import rramfx
from rramfx.data import ImageLoader
from rramfx.errors import DataError, TrainError
from rramfx.training.transaction import TrainingTransaction

from .tiny import TinyNet, loaders


def _fresh():
    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=0.1))
    gm.train()
    return gm


def _snapshot(gm):
    return ({k: v.clone() for k, v in gm.state_dict().items()}, {n: m.training for n, m in gm.named_modules()})


def _assert_unchanged(gm, snap):
    state, flags = snap
    now = gm.state_dict()
    assert set(now) == set(state)
    assert all(torch.equal(now[k], state[k]) for k in state)
    assert {n: m.training for n, m in gm.named_modules()} == flags


class _Batches:
    """A loader yielding fixed (x, y) batches."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _batch(x=None, y=None):
    x = torch.randn(8, 1, 12, 12) if x is None else x
    y = torch.zeros(8, dtype=torch.long) if y is None else y
    return _Batches([(x, y)])


@pytest.mark.parametrize("loader, needle", [
    (_batch(y=torch.zeros(8)), "integer class indices"),
    (_batch(y=torch.full((8,), 99, dtype=torch.long)), "holds classes 99..99"),
    (_batch(y=torch.full((8,), -1, dtype=torch.long)), "holds classes -1..-1"),
    (_batch(x=torch.randn(8, 3, 12, 12)), "do not run through the model"),
    (_batch(x=torch.randn(1, 12, 12)), "one sample without a batch dimension"),
    (_batch(x=torch.zeros(8, 1, 12, 12, dtype=torch.uint8)), "floating-point images"),
    (_batch(y=torch.zeros(5, dtype=torch.long)), r"shape \(8,\)"),
    (_Batches([]), "yielded no batches"),
])
def test_bad_first_batch_is_refused_before_anything_changes(loader, needle):
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(DataError, match=needle) as info:
        rramfx.train(gm, loader, 1, progress=False)
    assert "train_loader" in str(info.value)
    _assert_unchanged(gm, snap)


def test_bad_batch_late_in_the_epoch_restores_the_model():
    train, _ = loaders(n_train=128)
    good = list(train)
    bad = _Batches([good[0], (good[1][0], good[1][1].float())])
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(Exception):  # noqa: B017 - torch's own error deep in the epoch; the point is the restore
        rramfx.train(gm, bad, 1, progress=False)
    _assert_unchanged(gm, snap)


def test_checkpoint_of_another_model_is_refused_before_any_copy(tmp_path):
    train, _ = loaders(n_train=128)
    other = rramfx.prepare(TinyNet(num_classes=5), rramfx.Policy())
    rramfx.train(other, list(train), 1, progress=False, checkpoint=tmp_path / "c.ckpt")  # a list: no class names
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(TrainError, match="does not fit this model .*other shape.*nothing was loaded"):
        rramfx.train(gm, train, 1, progress=False, checkpoint=tmp_path / "c.ckpt")
    _assert_unchanged(gm, snap)


def test_diverged_training_is_refused_and_restored():
    train, _ = loaders(n_train=128)
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(TrainError):
        rramfx.train(gm, train, 1, lr=1e30, progress=False)
    _assert_unchanged(gm, snap)


def test_keyboard_interrupt_restores_weights_buffers_and_flags():
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(KeyboardInterrupt), TrainingTransaction(gm):
        with torch.no_grad():
            for p in gm.parameters():
                p.add_(1.0)
        for b in gm.buffers():
            b.fill_(7) if b.is_floating_point() else None
        gm.eval()
        raise KeyboardInterrupt
    _assert_unchanged(gm, snap)


def test_non_finite_weights_at_the_end_are_refused():
    gm = _fresh()
    snap = _snapshot(gm)
    with pytest.raises(TrainError, match="became non-finite"), TrainingTransaction(gm), torch.no_grad():
        next(gm.parameters()).fill_(float("nan"))
    _assert_unchanged(gm, snap)


def test_good_loader_still_trains():
    train, _ = loaders(n_train=128)
    gm = _fresh()
    history = rramfx.train(gm, train, 1, progress=False)
    assert len(history) == 1 and history[0]["loss"] > 0
    assert isinstance(train, ImageLoader)
