"""Shared test helpers: the public model list, small hand-written models, and comparison utilities."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

MODELS_FILE = Path(__file__).with_name("models.txt")

#: Input side length per model where the default (64) is too small for the architecture.
INPUT_SIZE = {"inception_v3": 96}


def pytest_configure(config: pytest.Config) -> None:
    # `make test` runs one xdist worker per core. torch's own intra-op threads on top of that mostly
    # wait for each other (measured: a 10-step training loop took 1 s on one thread and 12-70 s on
    # two on a loaded 2-core machine), so each worker computes on one thread.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def public_models() -> list[str]:
    return [ln.strip() for ln in MODELS_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def public_model_params(fast: set[str], mark: pytest.MarkDecorator = pytest.mark.slow) -> list:
    """The public models as pytest parameters: those in ``fast`` run by default, the rest carry ``mark``."""
    return [pytest.param(n, marks=() if n in fast else mark) for n in public_models()]


def input_for(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    size = INPUT_SIZE.get(name, 64)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


class SmallNet(nn.Module):
    """A little CNN with every placement case: kxk, 1x1, depthwise, grouped, shortcut, linear."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3):  # the model-spec factory signature
        super().__init__()
        self.stem = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.shortcut = nn.Conv2d(16, 32, 1, bias=False)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        y = torch.relu(self.pw(torch.relu(self.dw(x))))
        y = self.grouped(y)
        return self.head(torch.relu(y + self.shortcut(x)))


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


def snapshot(model: nn.Module) -> dict:
    """Everything about a model that a public function must not change."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(n, type(m)) for n, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k


def eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()
