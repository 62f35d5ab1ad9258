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
