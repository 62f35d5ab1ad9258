"""The user's own images: a folder in torchvision's ImageFolder layout, read into an `ImageData`.

``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>`` (or ``ROOT/test/...``): the class
names, their order and their count come from the sub-folders, as `torchvision.datasets.ImageFolder`
reads them (it is what reads the files here). Images are decoded once with
`torchvision.transforms.v2` into uint8 tensors and kept in memory, so `rramfx.data.ImageLoader`
batches them like the built-in datasets. On the command line the dataset is ``imagefolder:ROOT``.

Sizes: ``image_size`` resizes every image to that square side at read time; without it, images are
kept as stored when they all share one size, and otherwise resized to the most common size among
them (then ``--image-size`` / ``image_size`` should be given). Colour is kept as stored when every
image is grey (1 channel), else every image is converted to RGB. The normalisation mean and std are
measured on the training split (per channel), and the test split is normalised with the same.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import torch

from rramfx.data.datasets import ImageData, channel_stats, check_split
from rramfx.errors import DataError, DataFileError

__all__ = ["IMAGEFOLDER_PREFIX", "TEST_FOLDERS", "imagefolder_root", "load_imagefolder"]

#: The dataset-name prefix that names an ImageFolder root: ``imagefolder:ROOT``.
IMAGEFOLDER_PREFIX = "imagefolder:"
#: Sub-folders tried, in this order, for the test split.
TEST_FOLDERS = ("val", "test")


def imagefolder_root(name: str) -> Path | None:
    """ROOT of a dataset name ``imagefolder:ROOT`` (None for any other name)."""
    if not isinstance(name, str) or not name.lower().startswith(IMAGEFOLDER_PREFIX):
        return None
    root = name[len(IMAGEFOLDER_PREFIX):]
    if not root:
        raise DataError("--dataset imagefolder:ROOT needs a folder after the colon, e.g. imagefolder:data/flowers")
    return Path(root)


def _split_dir(root: Path, split: str) -> Path:
    if not root.is_dir():
        raise DataFileError(f"ImageFolder root '{root}' is not a folder (--dataset imagefolder:ROOT)")
    candidates = ("train",) if split == "train" else TEST_FOLDERS
    for sub in candidates:
        if (root / sub).is_dir():
            return root / sub
    wanted = " or ".join(f"'{root / s}'" for s in candidates)
    raise DataFileError(f"ImageFolder root '{root}' has no {wanted} folder: put the {split} images in "
                        f"{candidates[0]}/<class name>/ (torchvision's ImageFolder layout)")


@functools.lru_cache(maxsize=8)
def _read(folder: str, image_size: int | None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    try:
        ds = ImageFolder(folder, transform=v2.PILToTensor())
    except (FileNotFoundError, OSError) as e:
        raise DataFileError(f"cannot read ImageFolder '{folder}': {e}") from None
    if len(ds.classes) < 2:
        raise DataFileError(f"ImageFolder '{folder}' has {len(ds.classes)} class folder(s); a classifier needs "
                            "at least 2 (one sub-folder per class)")
    images: list[torch.Tensor] = []
    for i, (path, _) in enumerate(ds.samples):
        try:
            images.append(ds[i][0])
        except (OSError, ValueError) as e:
            raise DataFileError(f"cannot decode image '{path}': {e}") from None
    grey = all(im.shape[0] == 1 for im in images)
    images = [im[:3] if im.shape[0] >= 3 else im.expand(1 if grey else 3, -1, -1) for im in images]
    common = Counter(tuple(im.shape[1:]) for im in images).most_common(1)[0][0]
    size = (image_size, image_size) if image_size else common
    resize = v2.Resize(list(size), antialias=True)
    stacked = torch.stack([im if tuple(im.shape[1:]) == size else resize(im) for im in images]).contiguous()
    return stacked, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes)


def load_imagefolder(root: str | Path, split: str = "train", image_size: int | None = None) -> ImageData:
    """The ``split`` (``train``, or ``test`` read from ``val/`` or ``test/``) of the ImageFolder at
    ``root`` as an `ImageData`; see the module docstring for sizes, colour and normalisation.

    The class names of the two splits must agree (same sub-folders), else `DataFileError`."""
    root = Path(root)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive int, got {image_size!r}")
    train_dir, split_dir = _split_dir(root, "train"), _split_dir(root, check_split(split))
    train_images, _, classes = _read(str(train_dir), image_size)
    images, labels, split_classes = _read(str(split_dir), image_size)
    if split_classes != classes:
        raise DataFileError(f"ImageFolder '{root}': the test folder's classes {list(split_classes)} differ from "
                            f"train/'s {list(classes)}; both need the same class sub-folders")
    if images.shape[1] != train_images.shape[1]:
        images = images.expand(-1, train_images.shape[1], -1, -1).contiguous()
    mean, std = channel_stats(train_images)
    return ImageData(f"imagefolder:{root}", images, labels, len(classes), mean, std, classes, flip=True)
