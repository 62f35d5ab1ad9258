"""The CIFAR ResNets of He et al. (2016), Sec. 4.2: a 3x3 stem, three stages of basic blocks with
16/32/64 channels (the second and third stage halve the resolution), global pooling and one linear
layer. Where a block changes shape its shortcut is a 1x1 convolution with BatchNorm (the projection
shortcut the VTS 2024 paper keeps on the host, or pads to 3x3 to put on RRAM)."""

from __future__ import annotations

import torch
from torch import nn

from rramfx.models._common import scaled

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet32", "resnet56"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: ``blocks`` basic blocks per stage."""

    def __init__(self, blocks: int, num_classes: int = 10, in_chans: int = 3, width: float = 1.0):
        super().__init__()
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_ch = [], widths[0]
        for stage, out_ch in enumerate(widths):
            stage_blocks = []
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                stage_blocks.append(BasicBlock(in_ch, out_ch, stride))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage_blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet20(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> CifarResNet:
    """ResNet-20: 3 basic blocks per stage, 18 3x3 convolutions (about 0.27 M parameters)."""
    return CifarResNet(3, num_classes, in_chans, width)


def resnet32(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> CifarResNet:
    """ResNet-32: 5 basic blocks per stage."""
    return CifarResNet(5, num_classes, in_chans, width)


def resnet56(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> CifarResNet:
    """ResNet-56: 9 basic blocks per stage."""
    return CifarResNet(9, num_classes, in_chans, width)
