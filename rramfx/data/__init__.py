"""Image data sets read from disk (Fashion-MNIST, MNIST, CIFAR-10) or made up, and a seeded loader."""

from rramfx.data.datasets import (
    DATASETS,
    DEFAULT_DATA_DIR,
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    DataError,
    ImageData,
    ImageLoader,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    make_loaders,
    read_idx,
    synthetic,
)

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
