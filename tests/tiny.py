"""Tiny models and data for the workflow tests (train, recalibrate, Monte-Carlo, sweep): small enough
that a whole training run takes a fraction of a second on one core."""

from __future__ import annotations

import functools

import torch
from torch import nn

import rramfx
from rramfx.data import ImageLoader, synthetic


class TinyNet(nn.Module):
    """Two 3x3 conv-BN-ReLU layers (RRAM by default), pooling to 2x2, a linear head (host)."""

    def __init__(self, num_classes: int = 4, in_chans: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def loaders(n_train: int = 512, n_test: int = 256, size: int = 12, seed: int = 0) -> tuple[ImageLoader, ImageLoader]:
    train = ImageLoader(synthetic(n_train, size=size, seed=seed), 64, shuffle=True, seed=seed)
    test = ImageLoader(synthetic(n_test, size=size, seed=seed, split="test"), 128)
    return train, test


@functools.lru_cache(maxsize=4)
def _trained_state(drop_rate: float, epochs: int) -> dict:
    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=drop_rate))
    rramfx.train(gm, loaders()[0], epochs, lr=0.1, progress=False, seed=0)
    return {k: v.clone() for k, v in gm.state_dict().items()}


def trained(drop_rate: float = 0.0, epochs: int = 5, **policy) -> torch.fx.GraphModule:
    """A TinyNet prepared with ``drop_rate`` and trained on the synthetic set (cached per process)."""
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=drop_rate, **policy))
    gm.load_state_dict(_trained_state(drop_rate, epochs))
    return gm.eval()
