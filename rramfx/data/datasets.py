"""Datasets for the fault-tolerance experiments, held in memory and batched without worker processes.

- **Fashion-MNIST** and **MNIST** from a directory of the standard idx files (``train-images-idx3-ubyte``
  and friends, gzipped or not). Fashion-MNIST's default directory is where Debian's
  ``dataset-fashion-mnist`` package installs it, `FASHION_MNIST_DIR`.
- **CIFAR-10** from a directory in torchvision's layout (``cifar-10-batches-py/``, the extracted
  ``cifar-10-python.tar.gz``). Nothing is ever downloaded: a missing dataset raises `DataError` saying
  where the files are expected and how to get them.
- **synthetic**: seeded class templates plus noise, learnable in a few steps, for tests.

The readers are in `rramfx.data.readers`, the names `load_dataset` knows (and ``synthetic``) in
`rramfx.data.registry`, the loader in `rramfx.data.loader`; this module holds what they share, the
in-memory `ImageData` and `DataError`.

`ImageLoader` turns an `ImageData` into normalised float batches, adapting them to what the model
expects (grey images repeated to 3 channels, small images zero-padded or larger ones resized to
``image_size``) and, for training, applying light augmentation (random crop with padding, and a
horizontal flip where the dataset allows it) to whole batches at once, on the loader's device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from rramfx.errors import DataError

__all__ = ["DataError", "ImageData", "channel_stats", "check_split"]


@dataclass(frozen=True)
class ImageData:
    """A labelled image set in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), and the
    per-channel mean and std (of pixel values in [0, 1]) used to normalise it."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    flip: bool = False  # whether a horizontal flip keeps an image's class (not for digits)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"{self.name}: images must be a uint8 (N, C, H, W) tensor, got "
                            f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.name}: {self.images.shape[0]} images but labels of shape "
                            f"{tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise DataError(f"{self.name}: mean/std need one value per channel ({self.images.shape[1]})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_chans(self) -> int:
        """Channels per image (1 for grey, 3 for colour)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Height and width of the stored images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def describe(self) -> dict[str, Any]:
        """What a model trained on this data must know to be fed it again (plain JSON data): the
        ``dataset`` name, ``in_chans``, normalisation ``mean``/``std`` and
        ``class_names``, as a saved model and an exported ONNX file record them."""
        return {"dataset": self.name, "in_chans": self.in_chans, "mean": list(self.mean), "std": list(self.std),
                "class_names": list(self.classes) or [str(i) for i in range(self.num_classes)]}

    def subset(self, n: int | None, seed: int = 0) -> ImageData:
        """``n`` images drawn without replacement from a seeded permutation (all of them for None)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise DataError(f"{self.name}: a subset needs at least 1 image, got {n}")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return replace(self, images=self.images[idx], labels=self.labels[idx])


def check_split(split: str) -> str:
    """``split`` if it is ``"train"`` or ``"test"``, else a `DataError` (every reader takes one of the two)."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return split


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (at least 1e-3, rounded to 4 places) of uint8 ``images`` (N, C, H, W)
    scaled to [0, 1]: the normalisation an `ImageData` read from the user's own images gets."""
    pixels = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    mean = tuple(round(float(v), 4) for v in pixels.mean(1))
    std = tuple(round(max(float(v), 1e-3), 4) for v in pixels.std(1))
    return mean, std
