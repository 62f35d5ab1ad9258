"""Reference models of the papers, created by name: ``rramfx.models.create("resnet20", num_classes=10)``.

- ``resnet20`` (also ``resnet32``, ``resnet56``): the CIFAR ResNet of He et al. with 1x1 projection
  shortcuts where the shape changes, as in the VTS 2024 paper.
- ``vgg13`` (also ``vgg11``, ``vgg16``): the CIFAR VGG with BatchNorm and one linear classifier.
- ``mobilenetv2``: MobileNetV2 adapted to 32x32 inputs (stride-1 stem and first stages).
- ``mini_mobilenet`` / ``mini_mobilenet_<n>``: the follow-up report's n-bottleneck MNIST nets.

``width`` multiplies every channel count (the paper's widened networks, trained from scratch).
Every model takes ``num_classes`` and ``in_chans`` and works for any input of at least 16x16 pixels.
"""

from rramfx.models.mini_mobilenets import MiniMobileNet, mini_mobilenet
from rramfx.models.mobilenet_v2 import InvertedResidual, MobileNetV2, mobilenetv2
from rramfx.models.recipe import ModelRecipe
from rramfx.models.registry import create, list_models
from rramfx.models.resnet import BasicBlock, CifarResNet, resnet20, resnet32, resnet56
from rramfx.models.vgg import VGG, vgg11, vgg13, vgg16

__all__ = [
    "VGG",
    "BasicBlock",
    "CifarResNet",
    "InvertedResidual",
    "MiniMobileNet",
    "MobileNetV2",
    "ModelRecipe",
    "create",
    "list_models",
    "mini_mobilenet",
    "mobilenetv2",
    "resnet20",
    "resnet32",
    "resnet56",
    "vgg11",
    "vgg13",
    "vgg16",
]
