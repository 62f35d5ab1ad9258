"""Image data sets read from disk (Fashion-MNIST, MNIST, CIFAR-10, the user's own ImageFolder) or made up,
a seeded loader, and what any loader must yield (`rramfx.data.batches`)."""

from rramfx.data.adapt import from_dataset
from rramfx.data.batches import as_pairs, check_batch_fits, split_batch
from rramfx.data.datasets import ImageData
from rramfx.data.imagefolder import load_imagefolder
from rramfx.data.loader import ImageLoader, make_loaders
from rramfx.data.readers import (
    DEFAULT_DATA_DIR,
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from rramfx.data.registry import DATASETS, load_dataset, synthetic
from rramfx.errors import DataError

__all__ = [
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "FASHION_CLASSES",
    "FASHION_MNIST_DIR",
    "DataError",
    "ImageData",
    "ImageLoader",
    "as_pairs",
    "check_batch_fits",
    "from_dataset",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_imagefolder",
    "load_mnist",
    "make_loaders",
    "read_idx",
    "split_batch",
    "synthetic",
]
