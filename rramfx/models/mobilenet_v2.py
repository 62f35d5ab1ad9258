"""MobileNetV2 (Sandler et al., 2018) for 32x32 inputs, the variant the VTS 2024 paper evaluates on
CIFAR-10: the stem and the second stage keep stride 1, so an input is downsampled 8x instead of 32x.
Layers, widths and the width multiplier (channels rounded to multiples of 8) follow the original.

``round_nearest`` (as in torchvision) is that multiple. ``round_nearest=1`` rounds ``width`` × channels
to the nearest integer instead, so every layer grows by the same fraction, as the other reference
models do and as the VTS 2024 paper widens its networks ("p is the percentage increase in the number
of channels"). The difference matters for widened networks: at width 1.2 MobileNet's rounding gives
the 16-channel stage 24 channels (+50%) and the 32-channel ones 40 (+25%), and the network 1.52x the
MACs of width 1; plain rounding gives 19 and 38 channels and 1.42x the MACs, the paper's Table II
figure (see docs/cost-model.md).

Its building block, `InvertedResidual`, is the *linear bottleneck*: 1x1 expand (BN, ReLU6) → 3x3
depthwise (BN, ReLU6) → 1x1 linear projection (BN, no activation), plus the input when shapes match."""

from __future__ import annotations

import torch
from torch import nn

from rramfx.errors import ModelSpecError
from rramfx.models._common import make_divisible

__all__ = ["CIFAR_STAGES", "InvertedResidual", "MobileNetV2", "conv_bn", "mobilenetv2"]

#: (expansion t, output channels c, blocks n, first stride s) of each stage, for 32x32 inputs.
CIFAR_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet network
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution (no bias, "same" padding), BatchNorm and, with ``act``, ReLU6."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """The linear bottleneck: expand ×``expansion`` (skipped when 1), depthwise 3x3, linear projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_ch, hidden, 1))
        layers += [conv_bn(hidden, hidden, 3, stride=stride, groups=hidden), conv_bn(hidden, out_ch, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with the given stage table (default: the CIFAR one) and width multiplier; channel
    counts are multiples of ``round_nearest`` (8: the original recipe; 1: plain rounding)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        stages: tuple[tuple[int, int, int, int], ...] = CIFAR_STAGES,
        stem_stride: int = 1,
        round_nearest: int = 8,
    ):
        super().__init__()
        if isinstance(round_nearest, bool) or not isinstance(round_nearest, int) or round_nearest < 1:
            raise ModelSpecError(f"round_nearest must be a positive int, got {round_nearest!r}")
        in_ch = make_divisible(32 * width, round_nearest)
        last = make_divisible(1280 * max(1.0, width), round_nearest)
        blocks: list[nn.Module] = [conv_bn(in_chans, in_ch, 3, stride=stem_stride)]
        for t, c, n, s in stages:
            out_ch = make_divisible(c * width, round_nearest)
            for i in range(n):
                blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        blocks.append(conv_bn(in_ch, last, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenetv2(num_classes: int = 10, in_chans: int = 3, width: float = 1.0, round_nearest: int = 8) -> MobileNetV2:
    """MobileNetV2 for CIFAR-sized inputs (about 2.24 M parameters at width 1 with 10 classes).
    ``round_nearest=1`` widens every layer by the same fraction (the paper's widening; see the module doc)."""
    return MobileNetV2(num_classes, in_chans, width, round_nearest=round_nearest)
