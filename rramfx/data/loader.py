"""`ImageLoader`: an `ImageData` as normalised float batches shaped for the model, seeded and
augmented on the loader's device, and `make_loaders` for a dataset's training and test loaders."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from rramfx.data.datasets import ImageData
from rramfx.data.registry import load_dataset
from rramfx.errors import ArgumentTypeError, DataError

__all__ = ["ImageLoader", "make_loaders", "random_crop"]


class ImageLoader:
    """Batches of an `ImageData` as normalised float tensors, shaped for the model.

    ``in_chans``: grey images are repeated to 3 channels when the model wants 3 (colour to grey is
    refused). ``image_size``: smaller images are zero-padded (black border) to that size, larger ones
    resized. ``augment``: random crop from an image padded by size/8, plus a horizontal flip where the
    dataset allows it. ``shuffle`` draws a new order every epoch from ``seed`` and the epoch number,
    so a run is reproducible. ``device``: the whole uint8 set is moved there once and batches are made
    there. Iterating yields ``(images, labels)``; ``len()`` is the number of batches. `shard` gives
    one process of a distributed training its share of every epoch.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        augment: bool = False,
        image_size: int | None = None,
        in_chans: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
    ):
        if not isinstance(data, ImageData):
            raise ArgumentTypeError(f"ImageLoader: data must be an rramfx.data.ImageData, got {type(data).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive int, got {batch_size!r}")
        self.in_chans = data.in_chans if in_chans is None else int(in_chans)
        if self.in_chans not in (data.in_chans, 3) or (self.in_chans == 3 and data.in_chans not in (1, 3)):
            allowed = f"{data.in_chans} or 3" if data.in_chans == 1 else f"{data.in_chans}"
            raise DataError(f"{data.name} has {data.in_chans}-channel images; a model with in_chans={in_chans} "
                            f"cannot take them (use in_chans={allowed})")
        self.image_size = data.image_size if image_size is None else (int(image_size), int(image_size))
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.data = data
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last, self.seed = shuffle, augment, drop_last, seed
        self.epoch = 0
        self.rank, self.world_size = 0, 1
        self._images = data.images.to(self.device)
        self._labels = data.labels.to(self.device)
        self._mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)
        self._black = [-m / s for m, s in zip(data.mean, data.std, strict=True)]  # a black pixel, normalised

    @property
    def dataset(self) -> ImageData:
        """The `ImageData` this loader batches."""
        return self.data

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the ``epoch``-th one (its shuffle order and augmentation), e.g. on resume."""
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> ImageLoader:
        """This loader's share for process ``rank`` of ``world_size`` (a distributed training), with
        ``torch.utils.data.DistributedSampler``'s rule: every rank draws the same order of an epoch
        (shuffled from ``seed`` and the epoch, or file order), pads it to a multiple of ``world_size``
        by repeating its start, and takes every ``world_size``-th image from position ``rank``; so the
        ranks' shares are disjoint, cover the data and have the same length. Random crops and flips are
        drawn per rank. A new loader sharing the images; this one is not changed."""
        for name, value in (("rank", rank), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentTypeError(f"ImageLoader.shard: {name} must be an int, got {value!r}")
        if not 0 <= rank < world_size:
            raise DataError(f"ImageLoader.shard: rank must be in [0, world_size), got rank={rank}, "
                            f"world_size={world_size}")
        shard = copy.copy(self)
        shard.rank, shard.world_size = rank, world_size
        return shard

    def _count(self) -> int:
        """Images per epoch on this rank."""
        return -(-len(self.data) // self.world_size)

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(n, generator=g) if self.shuffle else None
        if self.world_size > 1:
            order, g = self._rank_order(order, g)
        order = order.to(self.device) if order is not None else None
        count = len(order) if order is not None else n
        for b in range(len(self)):
            idx = slice(b * self.batch_size, min(count, (b + 1) * self.batch_size))
            if order is not None:
                idx = order[idx]
            yield self._batch(self._images[idx], g), self._labels[idx]

    def _rank_order(self, order: torch.Tensor | None, g: torch.Generator) -> tuple[torch.Tensor, torch.Generator]:
        """This rank's positions in the epoch's ``order`` (padded by repeating its start), and its own
        augmentation generator (seeded from the shared one and the rank)."""
        n = len(self.data)
        order = torch.arange(n) if order is None else order
        total = self._count() * self.world_size
        order = order.repeat(-(-total // n))[:total]
        seed = int(torch.randint(2**62, (1,), generator=g)) + self.rank
        return order[self.rank::self.world_size], torch.Generator().manual_seed(seed)

    def _batch(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = (images.float() / 255.0 - self._mean) / self._std
        x = _fit_size(x, self.image_size, fill=self._black)
        if self.augment:
            x = random_crop(x, max(1, self.image_size[0] // 8), g, fill=self._black)
            if self.data.flip:
                flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
                x = torch.where(flip.view(-1, 1, 1, 1), TF.horizontal_flip(x), x)
        if self.in_chans != x.shape[1]:
            x = x.expand(-1, self.in_chans, -1, -1).contiguous()
        return x


def _fit_size(x: torch.Tensor, size: tuple[int, int], fill: list[float]) -> torch.Tensor:
    """Pad (``fill``: a black pixel after normalisation) centred up to ``size``, or resize (antialiased
    bilinear), with torchvision's batched ``transforms.v2`` ops."""
    h, w = x.shape[2:]
    if (h, w) == size:
        return x
    if h <= size[0] and w <= size[1]:
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        return TF.pad(x, [left, top, size[1] - w - left, size[0] - h - top], fill=fill)
    return TF.resize(x, list(size), antialias=True)


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator, fill: list[float] | float = 0.0) -> torch.Tensor:
    """Each image of the batch ``x`` (N, C, H, W) shifted by its own random offset of up to ``pad``
    pixels each way (``transforms.v2.RandomCrop(padding=pad)`` drawn per image, offsets from ``g``).
    torchvision pads the batch; the per-image crop is one gather, because v2 draws one crop per call
    and a per-image loop of it is several times slower (``benchmarks/loader.py``)."""
    n, c, h, w = x.shape
    padded = TF.pad(x, [pad] * 4, fill=fill)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


def make_loaders(
    name: str,
    *,
    root: str | Path | None = None,
    batch_size: int = 128,
    eval_batch_size: int | None = None,
    image_size: int | None = None,
    in_chans: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[ImageLoader, ImageLoader]:
    """Training and test loaders for dataset ``name``: the training one shuffled and augmented, the
    test one in file order. Subsets are seeded, so every run of an experiment sees the same images."""
    train = load_dataset(name, "train", root, image_size=image_size).subset(train_subset, seed=seed)
    test = load_dataset(name, "test", root, image_size=image_size).subset(test_subset, seed=seed + 1)
    common = {"image_size": image_size, "in_chans": in_chans, "device": device}
    return (
        ImageLoader(train, batch_size, shuffle=True, augment=augment, drop_last=len(train) > batch_size, seed=seed,
                    **common),
        ImageLoader(test, eval_batch_size or max(batch_size, 256), **common),
    )
