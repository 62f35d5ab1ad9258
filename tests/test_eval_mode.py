"""`eval_mode`: eval mode inside the block, every submodule's own training flag back afterwards."""

import pytest
from torch import nn

from rramfx.graph.modules import eval_mode


def _mixed() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model.train()
    model[1].eval()  # a frozen part inside a model that trains
    return model


def test_flags_inside_and_after():
    model = _mixed()
    with eval_mode(model) as same:
        assert same is model and [m.training for m in model.modules()] == [False] * 4
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_flags_come_back_when_the_block_raises():
    model = _mixed()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_measurements_give_every_submodule_its_flag_back():
    """evaluate, monte_carlo and count_macs run in eval mode and leave a frozen BN frozen in a training
    model (a single ``model.train(was_training)`` would switch it back to training)."""
    import torch

    import rramfx
    from rramfx.graph.mac_count import count_macs

    from .tiny import TinyNet, loaders

    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=0.2)).train()
    gm.bn1.eval()
    before = _flags(gm)
    assert before.count(False) == 1
    _, test = loaders(n_train=64, n_test=64)
    assert 0.0 <= rramfx.evaluate(gm, test) <= 1.0
    assert _flags(gm) == before
    result = rramfx.monte_carlo(gm, test, rramfx.FaultModel(sa1=0.1), trials=2, seed=0, fault_rate=0.1)
    assert result.trials == 2 and _flags(gm) == before
    counts = count_macs(gm, ["conv1"], (torch.zeros(1, 1, 12, 12),))
    assert counts == {"conv1": (1, 8 * 9 * 144)} and _flags(gm) == before
