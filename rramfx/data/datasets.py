"""Datasets for the fault-tolerance experiments, held in memory and batched without worker processes.

- **Fashion-MNIST** and **MNIST** from a directory of the standard idx files (``train-images-idx3-ubyte``
  and friends, gzipped or not). Fashion-MNIST's default directory is where Debian's
  ``dataset-fashion-mnist`` package installs it, `FASHION_MNIST_DIR`.
- **CIFAR-10** from a directory in torchvision's layout (``cifar-10-batches-py/``, the extracted
  ``cifar-10-python.tar.gz``). Nothing is ever downloaded: a missing dataset raises `DataError` saying
  where the files are expected and how to get them.
- **synthetic**: seeded class templates plus noise, learnable in a few steps, for tests.

`ImageLoader` turns an `ImageData` into normalised float batches, adapting them to what the model
expects (grey images repeated to 3 channels, small images zero-padded or larger ones resized to
``image_size``) and, for training, applying light augmentation (random crop with padding, and a
horizontal flip where the dataset allows it) to whole batches at once, on the loader's device.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rramfx.errors import ArgumentTypeError, DataError, DataFileError

#: Where Debian's ``dataset-fashion-mnist`` package puts the Fashion-MNIST idx files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Default directory for datasets that no package ships (MNIST, CIFAR-10): ``./data``.
DEFAULT_DATA_DIR = Path("data")
#: Names `load_dataset` and `make_loaders` accept.
DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, n: int | None, seed: int = 0) -> ImageData:
        """``n`` images drawn without replacement from a seeded permutation (all of them for None)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise DataError(f"{self.name}: a subset needs at least 1 image, got {n}")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return replace(self, images=self.images[idx], labels=self.labels[idx])


# ---- files ---------------------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (the MNIST format; gzipped when the name ends in ``.gz``) into an array."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"idx file '{path}' does not exist") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(f"cannot read idx file '{path}': {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataFileError(f"'{path}' is not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"idx file '{path}' is truncated inside its header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError(f"idx file '{path}' holds {len(raw) - header} data bytes, its header {dims} "
                        f"promises {expected}: the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str, subdirs: tuple[str, ...]) -> Path | None:
    for sub in ("", *subdirs):
        for suffix in ("", ".gz"):
            candidate = root / sub / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=8)
def _load_idx_pair(root: str, split: str, subdirs: tuple[str, ...], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    kinds = ("images-idx3-ubyte", "labels-idx1-ubyte")
    found = {kind: _find(Path(root), f"{prefix}-{kind}", subdirs) for kind in kinds}
    missing = [f"{prefix}-{kind}[.gz]" for kind, p in found.items() if p is None]
    if missing:
        raise DataFileError(f"{what} {split} split not found in '{root}' (missing {', '.join(missing)}).")
    images = read_idx(found["images-idx3-ubyte"])
    labels = read_idx(found["labels-idx1-ubyte"])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0] or images.dtype != np.uint8:
        raise DataFileError(f"{what} files in '{root}' do not fit together: images {images.shape} {images.dtype}, "
                        f"labels {labels.shape}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageData:
    """Fashion-MNIST (60,000 train / 10,000 test 28x28 grey images, 10 classes) from idx files."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    try:
        images, labels = _load_idx_pair(str(root), _split(split), ("raw", "FashionMNIST/raw"), "Fashion-MNIST")
    except DataError as e:
        hint = (" Install Debian's package: `sudo apt-get install dataset-fashion-mnist` (files go to "
                f"{FASHION_MNIST_DIR}), or pass a directory holding train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.")
        raise type(e)(f"{e}{hint if 'not found' in str(e) else ''}") from None
    return ImageData("fashion-mnist", images, labels, 10, (0.2860,), (0.3530,), FASHION_CLASSES, flip=True)


def load_mnist(split: str = "train", root: str | Path | None = None) -> ImageData:
    """MNIST (60,000 / 10,000 28x28 grey digits) from idx files in ``root`` (default ``./data``, where
    torchvision's ``MNIST/raw`` layout is also recognised)."""
    root = Path(root) if root is not None else DEFAULT_DATA_DIR
    try:
        images, labels = _load_idx_pair(str(root), _split(split), ("raw", "MNIST/raw"), "MNIST")
    except DataError as e:
        hint = (" Put the four MNIST idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in that directory or pass another "
                "with --data-dir / root=; rramfx never downloads data.")
        raise type(e)(f"{e}{hint if 'not found' in str(e) else ''}") from None
    return ImageData("mnist", images, labels, 10, (0.1307,), (0.3081,), tuple(str(d) for d in range(10)), flip=False)


@functools.lru_cache(maxsize=4)
def _load_cifar_batches(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = Path(root)
    if not (base / "test_batch").is_file() and (base / "cifar-10-batches-py").is_dir():
        base = base / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise DataFileError(
            f"CIFAR-10 {split} split not found: '{Path(root) / 'cifar-10-batches-py'}' lacks {', '.join(missing)}. "
            "rramfx never downloads data: extract cifar-10-python.tar.gz (the CIFAR-10 'python version') so "
            "that DIR/cifar-10-batches-py/ holds data_batch_1..5 and test_batch (torchvision's layout), then "
            "pass DIR with --data-dir / root=."
        )
    images, labels = [], []
    for n in names:
        try:
            with open(base / n, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[b"labels"], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise DataFileError(f"'{base / n}' is not a readable CIFAR-10 batch file: {e}") from e
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar10(split: str = "train", root: str | Path | None = None) -> ImageData:
    """CIFAR-10 (50,000 / 10,000 32x32 colour images) from torchvision's ``cifar-10-batches-py`` layout."""
    root = Path(root) if root is not None else DEFAULT_DATA_DIR
    images, labels = _load_cifar_batches(str(root), _split(split))
    return ImageData("cifar10", images, labels, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     CIFAR10_CLASSES, flip=True)


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
    g = torch.Generator().manual_seed(seed * 2 + (1 if _split(split) == "test" else 0) + 7919)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    x = templates[labels] + noise * torch.randn(n, in_chans, size, size, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageData("synthetic", images, labels.long(), num_classes, (0.5,) * in_chans, (0.3,) * in_chans,
                     tuple(f"class{i}" for i in range(num_classes)), flip=False)


def load_dataset(name: str, split: str = "train", root: str | Path | None = None) -> ImageData:
    """Load a dataset by name (`DATASETS`). ``synthetic`` ignores ``root`` and uses its defaults."""
    key = name.lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return load_fashion_mnist(split, root)
    if key == "mnist":
        return load_mnist(split, root)
    if key in ("cifar10", "cifar-10"):
        return load_cifar10(split, root)
    if key == "synthetic":
        return synthetic(n=2048 if split == "train" else 512, split=split)
    raise DataError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")


# ---- batching ------------------------------------------------------------------------------------


class ImageLoader:
    """Batches of an `ImageData` as normalised float tensors, shaped for the model.

    ``in_chans``: grey images are repeated to 3 channels when the model wants 3 (colour to grey is
    refused). ``image_size``: smaller images are zero-padded (black border) to that size, larger ones
    resized. ``augment``: random crop from an image padded by size/8, plus a horizontal flip where the
    dataset allows it. ``shuffle`` draws a new order every epoch from ``seed`` and the epoch number,
    so a run is reproducible. ``device``: the whole uint8 set is moved there once and batches are made
    there. Iterating yields ``(images, labels)``; ``len()`` is the number of batches.
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
        self._images = data.images.to(self.device)
        self._labels = data.labels.to(self.device)
        self._mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)

    @property
    def dataset(self) -> ImageData:
        return self.data

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the ``epoch``-th one (its shuffle order and augmentation), e.g. on resume."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(n, generator=g).to(self.device) if self.shuffle else None
        for b in range(len(self)):
            idx = slice(b * self.batch_size, min(n, (b + 1) * self.batch_size))
            if order is not None:
                idx = order[idx]
            yield self._batch(self._images[idx], g), self._labels[idx]

    def _batch(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = (images.float() / 255.0 - self._mean) / self._std
        x = _fit_size(x, self.image_size, fill=(-self._mean / self._std))
        if self.augment:
            x = _random_crop(x, max(1, self.image_size[0] // 8), g, fill=(-self._mean / self._std))
            if self.data.flip:
                flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if self.in_chans != x.shape[1]:
            x = x.expand(-1, self.in_chans, -1, -1).contiguous()
        return x


def _fit_size(x: torch.Tensor, size: tuple[int, int], fill: torch.Tensor) -> torch.Tensor:
    """Zero-pad (in pixel space: ``fill`` is a black pixel after normalisation) up to ``size``, or resize."""
    h, w = x.shape[2:]
    if (h, w) == size:
        return x
    if h <= size[0] and w <= size[1]:
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        out = fill.expand(x.shape[0], x.shape[1], *size).clone()
        out[:, :, top: top + h, left: left + w] = x
        return out
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _random_crop(x: torch.Tensor, pad: int, g: torch.Generator, fill: torch.Tensor) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way (one gather for the whole batch)."""
    n, c, h, w = x.shape
    padded = fill.expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad: pad + h, pad: pad + w] = x
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
    train = load_dataset(name, "train", root).subset(train_subset, seed=seed)
    test = load_dataset(name, "test", root).subset(test_subset, seed=seed + 1)
    common = {"image_size": image_size, "in_chans": in_chans, "device": device}
    return (
        ImageLoader(train, batch_size, shuffle=True, augment=augment, drop_last=len(train) > batch_size, seed=seed,
                    **common),
        ImageLoader(test, eval_batch_size or max(batch_size, 256), **common),
    )


__all__ = [
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "FASHION_MNIST_DIR",
    "DataError",
    "ImageData",
    "ImageLoader",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "make_loaders",
    "read_idx",
    "synthetic",
]
