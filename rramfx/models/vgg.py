"""CIFAR VGG with BatchNorm (Simonyan & Zisserman's configurations, 3x3 convolutions, BN after each):
the convolutional trunk of VGG-11/13/16, then global average pooling and one linear classifier, as
the CIFAR versions used in the VTS 2024 paper. Max-pooling rounds up so that 28x28 inputs work too."""

from __future__ import annotations

import torch
from torch import nn

from rramfx.models._common import scaled

__all__ = ["CONFIGS", "VGG", "vgg11", "vgg13", "vgg16"]

CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """A VGG trunk from a configuration list (ints: 3x3 conv-BN-ReLU widths, "M": 2x2 max-pool)."""

    def __init__(self, config: list[int | str], num_classes: int = 10, in_chans: int = 3, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = in_chans
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out_ch = scaled(int(item), width)
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                           nn.ReLU(inplace=True)]
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg11(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> VGG:
    """VGG-11 with BatchNorm, CIFAR head."""
    return VGG(CONFIGS["vgg11"], num_classes, in_chans, width)


def vgg13(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> VGG:
    """VGG-13 with BatchNorm, CIFAR head (10 3x3 convolutions, about 9.4 M parameters)."""
    return VGG(CONFIGS["vgg13"], num_classes, in_chans, width)


def vgg16(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> VGG:
    """VGG-16 with BatchNorm, CIFAR head."""
    return VGG(CONFIGS["vgg16"], num_classes, in_chans, width)
