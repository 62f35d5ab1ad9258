"""Dataset files on disk: the idx format of (Fashion-)MNIST, and CIFAR-10's pickled batches (read by
torchvision's `CIFAR10`).

Nothing is ever downloaded: a missing dataset raises `DataError` saying where the files are expected
and how to get them. Decoded arrays are cached per process, so several loaders of one dataset read
its files once.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from rramfx.data.datasets import ImageData, check_split
from rramfx.errors import DataError, DataFileError

__all__ = [
    "CIFAR10_CLASSES",
    "DEFAULT_DATA_DIR",
    "FASHION_CLASSES",
    "FASHION_MNIST_DIR",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the Fashion-MNIST idx files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Default directory for datasets that no package ships (MNIST, CIFAR-10): ``./data``.
DEFAULT_DATA_DIR = Path("data")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageData:
    """Fashion-MNIST (60,000 train / 10,000 test 28x28 grey images, 10 classes) from idx files."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    try:
        images, labels = _load_idx_pair(str(root), check_split(split), ("raw", "FashionMNIST/raw"), "Fashion-MNIST")
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
        images, labels = _load_idx_pair(str(root), check_split(split), ("raw", "MNIST/raw"), "MNIST")
    except DataError as e:
        hint = (" Put the four MNIST idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in that directory or pass another "
                "with --data-dir / root=; rramfx never downloads data.")
        raise type(e)(f"{e}{hint if 'not found' in str(e) else ''}") from None
    return ImageData("mnist", images, labels, 10, (0.1307,), (0.3081,), tuple(str(d) for d in range(10)), flip=False)


def _cifar_reader() -> type:
    """torchvision's `CIFAR10` reading only the asked split's batch files: its whole-archive md5 check
    (all six files, also for the test split) is replaced by rramfx's own check of the split's files,
    and the class names come from rramfx when ``batches.meta`` is absent."""
    from torchvision.datasets import CIFAR10

    class _Cifar10(CIFAR10):
        def _check_integrity(self) -> bool:
            files = self.train_list if self.train else self.test_list
            return all((Path(self.root) / self.base_folder / name).is_file() for name, _ in files)

        def _load_meta(self) -> None:
            self.classes = list(CIFAR10_CLASSES)

    return _Cifar10


@functools.lru_cache(maxsize=4)
def _load_cifar_batches(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = Path(root)
    if base.name == "cifar-10-batches-py" and not (base / "cifar-10-batches-py").is_dir():
        base = base.parent  # DIR/cifar-10-batches-py itself was given
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = base / "cifar-10-batches-py"
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 {split} split not found: '{folder}' lacks {', '.join(missing)}. "
            "rramfx never downloads data: extract cifar-10-python.tar.gz (the CIFAR-10 'python version') so "
            "that DIR/cifar-10-batches-py/ holds data_batch_1..5 and test_batch (torchvision's layout), then "
            "pass DIR with --data-dir / root=."
        )
    try:
        ds = _cifar_reader()(str(base), train=split == "train", download=False)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, RuntimeError) as e:
        raise DataFileError(f"'{folder}' does not hold readable CIFAR-10 batch files: {e}") from e
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return images, torch.tensor(ds.targets, dtype=torch.long)


def load_cifar10(split: str = "train", root: str | Path | None = None) -> ImageData:
    """CIFAR-10 (50,000 / 10,000 32x32 colour images) from torchvision's ``cifar-10-batches-py`` layout."""
    root = Path(root) if root is not None else DEFAULT_DATA_DIR
    images, labels = _load_cifar_batches(str(root), check_split(split))
    return ImageData("cifar10", images, labels, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     CIFAR10_CLASSES, flip=True)
