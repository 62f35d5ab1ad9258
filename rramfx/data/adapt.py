"""`from_dataset`: any map-style torch ``Dataset`` of images read into an in-memory `ImageData`, so
that `rramfx.data.ImageLoader` (faster than a ``DataLoader`` on CPU: ``benchmarks/loader.py``) batches it.

Items may be ``(image, label)`` pairs or dicts (the keys as `rramfx.data.split_batch` finds them);
an image may be a PIL image, a numpy (H, W, C) array or a (C, H, W) tensor, uint8 or float in [0, 1]
(converted with `torchvision.transforms.v2`). Every image must have the same size and channels: give
the dataset a ``transforms.v2.Resize`` otherwise. The dataset is read once, item by item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rramfx.data.batches import split_batch
from rramfx.data.datasets import ImageData, channel_stats
from rramfx.errors import ArgumentTypeError, DataError

__all__ = ["from_dataset"]


def _as_uint8(image: Any, index: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    try:
        img = TF.to_image(image)
    except TypeError as e:
        raise DataError(f"from_dataset: item {index}'s image is a {type(image).__name__}, not a PIL image, "
                        f"array or tensor ({e})") from None
    if img.dtype != torch.uint8:
        if not img.is_floating_point():
            raise DataError(f"from_dataset: item {index}'s image is {img.dtype}; give uint8 or float in [0, 1]")
        if img.numel() and not 0.0 <= float(img.min()) <= float(img.max()) <= 1.0:
            raise DataError(f"from_dataset: item {index}'s float image ranges over {float(img.min()):.3g}.."
                            f"{float(img.max()):.3g}; give pixel values in [0, 1] (or uint8 0..255)")
        img = TF.to_dtype(img, torch.uint8, scale=True)
    return img.as_subclass(torch.Tensor)


def from_dataset(
    dataset: Any,
    *,
    name: str = "dataset",
    keys: tuple[str, str] | None = None,
    classes: Sequence[str] | None = None,
    flip: bool = False,
) -> ImageData:
    """The images and labels of the map-style ``dataset`` (``len`` and ``dataset[i]``) as an
    `ImageData`: uint8 in memory, normalised by the mean/std measured on it, ``classes`` from the
    argument or ``dataset.classes`` (else ``0 .. max label``). ``flip``: whether a horizontal flip
    keeps an image's class (`ImageLoader`'s augmentation uses it). The dataset is not changed."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ArgumentTypeError(f"from_dataset: dataset must be a map-style Dataset (len() and dataset[i]), "
                                f"got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise DataError(f"from_dataset: dataset {name!r} is empty")
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = split_batch(dataset[i], keys)
        images.append(_as_uint8(image, i))
        labels.append(int(label))
        if images[-1].shape != images[0].shape:
            raise DataError(f"from_dataset: item {i}'s image is {tuple(images[-1].shape)}, item 0's "
                            f"{tuple(images[0].shape)}; give the dataset a transforms.v2.Resize so all share one size")
    stacked = torch.stack(images)
    names = tuple(str(c) for c in (classes if classes is not None else getattr(dataset, "classes", None) or ()))
    num_classes = len(names) or max(labels) + 1
    if min(labels) < 0 or max(labels) >= num_classes:
        raise DataError(f"from_dataset: labels range over {min(labels)}..{max(labels)} but there are "
                        f"{num_classes} classes {list(names)}")
    mean, std = channel_stats(stacked)
    return ImageData(name, stacked, torch.tensor(labels, dtype=torch.long), num_classes, mean, std, names, flip=flip)
