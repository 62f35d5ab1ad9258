"""The datasets known by name: `load_dataset` maps a name of `DATASETS` to its reader, and
`synthetic` makes up a small learnable set for tests."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from rramfx.data.datasets import ImageData, check_split
from rramfx.data.imagefolder import imagefolder_root, load_imagefolder
from rramfx.data.readers import load_cifar10, load_fashion_mnist, load_mnist
from rramfx.errors import DataError

__all__ = ["DATASETS", "load_dataset", "synthetic"]

#: Names `load_dataset` and `make_loaders` accept, besides ``imagefolder:ROOT`` (the user's own images).
DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")


def synthetic(n: int = 512, num_classes: int = 4, in_chans: int = 1, size: int = 16, seed: int = 0,
              split: str = "train", noise: float = 0.25) -> ImageData:
    """A learnable toy dataset: each class is a fixed random smooth pattern (drawn from ``seed``), each
    image its class pattern plus Gaussian noise of std ``noise`` (drawn from ``seed`` and ``split``)."""
    if n < 1 or num_classes < 2 or in_chans < 1 or size < 4:
        raise DataError(f"synthetic data needs n >= 1, num_classes >= 2, in_chans >= 1 and size >= 4; got "
                        f"n={n}, num_classes={num_classes}, in_chans={in_chans}, size={size}")
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, in_chans, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    g = torch.Generator().manual_seed(seed * 2 + (1 if check_split(split) == "test" else 0) + 7919)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    x = templates[labels] + noise * torch.randn(n, in_chans, size, size, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageData("synthetic", images, labels.long(), num_classes, (0.5,) * in_chans, (0.3,) * in_chans,
                     tuple(f"class{i}" for i in range(num_classes)), flip=False)


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, *,
                 image_size: int | None = None) -> ImageData:
    """Load a dataset by name (`DATASETS`, or ``imagefolder:ROOT`` for a folder of the user's images,
    `rramfx.data.imagefolder`). ``synthetic`` ignores ``root`` and uses its defaults. ``image_size``
    resizes an ImageFolder's images when they are read (the loaders pad or resize the others)."""
    folder = imagefolder_root(name)
    if folder is not None:
        return load_imagefolder(folder, split, image_size)
    key = name.lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return load_fashion_mnist(split, root)
    if key == "mnist":
        return load_mnist(split, root)
    if key in ("cifar10", "cifar-10"):
        return load_cifar10(split, root)
    if key == "synthetic":
        return synthetic(n=2048 if split == "train" else 512, split=split)
    raise DataError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}, or imagefolder:ROOT for "
                    "a folder of your own images (ROOT/train/<class>/..., ROOT/val/<class>/...)")
