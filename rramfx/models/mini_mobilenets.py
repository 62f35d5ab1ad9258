"""Mini MobileNets, the follow-up report's small MNIST networks: a 3x3 stem, ``n`` linear bottlenecks
(`InvertedResidual`) and one linear classifier on globally pooled features.

The first two bottlenecks halve the resolution (28 → 14 → 7) and widen 16 → 24 → 32 channels; any
further ones keep 32 channels at stride 1, so they are residual. On an RRAM chip with the default
policy the 3x3 stem and depthwise convolutions sit on the crossbar, the 1x1 ones on the host."""

from __future__ import annotations

import torch
from torch import nn

from rramfx.models._common import scaled
from rramfx.models.mobilenet_v2 import InvertedResidual, conv_bn

__all__ = ["MiniMobileNet", "mini_mobilenet"]


class MiniMobileNet(nn.Module):
    """Stem, ``bottlenecks`` inverted residual blocks with ``expansion``, pooling, linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: float = 1.0, bottlenecks: int = 2,
                 expansion: int = 6):
        super().__init__()
        if isinstance(bottlenecks, bool) or not isinstance(bottlenecks, int) or not 1 <= bottlenecks <= 64:
            from rramfx.errors import ModelSpecError

            raise ModelSpecError(f"mini_mobilenet needs 1 to 64 bottlenecks, got {bottlenecks!r}")
        widths = [scaled(c, width) for c in (16, 24, 32)]
        blocks: list[nn.Module] = [conv_bn(in_chans, widths[0], 3)]
        in_ch = widths[0]
        for i in range(bottlenecks):
            out_ch, stride = (widths[i + 1], 2) if i < 2 else (widths[2], 1)
            blocks.append(InvertedResidual(in_ch, out_ch, stride, expansion))
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mini_mobilenet(num_classes: int = 10, in_chans: int = 1, width: float = 1.0, bottlenecks: int = 2,
                   expansion: int = 6) -> MiniMobileNet:
    """A mini MobileNet with ``bottlenecks`` linear bottlenecks (the report studies 2 to 7)."""
    return MiniMobileNet(num_classes, in_chans, width, bottlenecks, expansion)
