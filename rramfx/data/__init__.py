"""Image data sets read from disk (Fashion-MNIST, MNIST, CIFAR-10) or made up, and a seeded loader."""

from rramfx.data.datasets import ImageData
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
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "make_loaders",
    "read_idx",
    "synthetic",
]
