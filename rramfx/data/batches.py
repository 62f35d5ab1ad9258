"""What a loader must yield, and the one check of a first batch against a model.

Every function of rramfx that reads a loader (`rramfx.train`, `rramfx.recalibrate_bn`,
`rramfx.monte_carlo`, `rramfx.ort_monte_carlo`, `rramfx.sweep`) takes any iterable of batches that
are either ``(inputs, labels)`` pairs (a torch ``DataLoader`` over a ``Dataset`` returning
``(image, label)``, as torchvision's do) or dicts (as Hugging Face ``datasets`` yield). A dict batch is
read by `split_batch` from the keys ``image``/``label`` or the usual alternatives (`IMAGE_KEYS`,
`LABEL_KEYS`); other names are given once with `as_pairs(loader, keys=("img", "cls"))`.

`check_batch_fits` is what each of them asks of the first batch before anything changes: the inputs'
channels against the model's first layer, the labels and the data's class count
(``dataset.classes``) against the model's outputs, each mismatch a `DataError` saying what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rramfx.errors import ArgumentTypeError, DataError
from rramfx.graph.modules import eval_mode, module_device
from rramfx.tensor_checks import check_labels

__all__ = ["IMAGE_KEYS", "LABEL_KEYS", "PairLoader", "as_pairs", "check_batch_fits", "loader_classes",
           "split_batch"]

#: Keys of a dict batch tried, in order, for the inputs and for the labels.
IMAGE_KEYS = ("image", "img", "pixel_values", "input", "inputs", "x")
LABEL_KEYS = ("label", "labels", "target", "targets", "y")


def _pick(batch: Mapping[str, Any], wanted: str | None, defaults: Sequence[str], what: str) -> Any:
    names = (wanted,) if wanted is not None else defaults
    for name in names:
        if name in batch:
            return batch[name]
    raise DataError(f"a dict batch with keys {sorted(map(str, batch))} has no {what} key "
                    f"({' / '.join(names)}): wrap the loader as rramfx.data.as_pairs(loader, "
                    f"keys=(IMAGE_KEY, LABEL_KEY)) naming its keys")


def split_batch(batch: Any, keys: tuple[str, str] | None = None) -> tuple[Any, Any]:
    """``(inputs, labels)`` of one batch: the first two items of a tuple or list, or two values of a
    dict (``keys`` = (image key, label key); default: the first of `IMAGE_KEYS` and `LABEL_KEYS`
    present). Anything else raises `ArgumentTypeError` saying what a loader must yield."""
    if isinstance(batch, Mapping):
        image_key, label_key = keys if keys is not None else (None, None)
        return _pick(batch, image_key, IMAGE_KEYS, "image"), _pick(batch, label_key, LABEL_KEYS, "label")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ArgumentTypeError(f"a loader must yield (inputs, labels) pairs or dicts with image and label keys, "
                            f"got a {type(batch).__name__}")


class PairLoader:
    """A loader whose batches are turned into ``(inputs, labels)`` pairs by `split_batch` with ``keys``;
    its length, ``dataset`` and ``set_epoch`` are the wrapped loader's."""

    def __init__(self, loader: Iterable[Any], keys: tuple[str, str] | None = None):
        if keys is not None and (len(keys) != 2 or not all(isinstance(k, str) for k in keys)):
            raise ArgumentTypeError(f"keys must be (image key, label key), two strings; got {keys!r}")
        self.loader, self.keys = loader, keys

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for batch in self.loader:
            yield split_batch(batch, self.keys)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    @property
    def dataset(self) -> Any:
        """The wrapped loader's ``dataset`` (None when it has none)."""
        return getattr(self.loader, "dataset", None)

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the wrapped loader when it has ``set_epoch``."""
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)


def as_pairs(loader: Iterable[Any], keys: tuple[str, str] | None = ("image", "label")) -> PairLoader:
    """``loader`` yielding ``(inputs, labels)``: for dict batches whose keys are not the usual ones."""
    return PairLoader(loader, keys)


def loader_classes(loader: Any) -> tuple[str, ...] | None:
    """The class names of a loader's data (``loader.dataset.classes``, as torchvision datasets, an
    `rramfx.data.ImageData` and Hugging Face ``ClassLabel`` features hold them), or None."""
    dataset = getattr(loader, "dataset", None)
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return tuple(str(c) for c in classes)
    return None


def _first_in_chans(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


@torch.no_grad()
def check_batch_fits(model: nn.Module, batch: Any, *, classes: Sequence[str] | None = None,
                     where: str = "loader", outputs: int | None = None) -> None:
    """Check the first ``batch`` of ``where`` (a loader's name in messages; a bare tensor is inputs
    without labels) against ``model``: its
    inputs' channels against the first convolution's, and its labels and ``classes`` (the data's class
    names) against the model's outputs (one forward of one sample in eval mode, unless the caller ran
    one and gives the model's ``outputs``; nothing in ``model`` changes). A mismatch raises `DataError`
    saying which option to change."""
    x, y = (batch, torch.zeros(0, dtype=torch.long)) if isinstance(batch, torch.Tensor) else split_batch(batch)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ArgumentTypeError(f"{where} must yield tensors, got inputs of type {type(x).__name__} and labels of "
                                f"type {type(y).__name__} (add torchvision.transforms.v2.ToImage/ToDtype)")
    chans = _first_in_chans(model)
    if chans is not None and (x.dim() < 2 or x.shape[1] != chans):
        got = x.shape[1] if x.dim() >= 2 else "no"
        raise DataError(f"{where} yields {got}-channel inputs of shape {tuple(x.shape)}, but the model's first "
                        f"layer takes {chans} channels: build the model with in_chans={got} (--in-chans), or "
                        "convert the images (e.g. torchvision.transforms.v2.Grayscale / RGB)")
    if outputs is None:
        with eval_mode(model):
            outputs = int(model(x[:1].to(module_device(model))).shape[-1])
    if classes is not None and len(classes) != outputs:
        raise DataError(f"{where}'s data has {len(classes)} classes ({', '.join(list(classes)[:5])}"
                        f"{', ...' if len(classes) > 5 else ''}) but the model has {outputs} outputs: build it "
                        f"with num_classes={len(classes)} (--num-classes)")
    if y.numel() and not y.is_floating_point() and (int(y.min()) < 0 or int(y.max()) >= outputs):
        raise DataError(f"{where} yields labels from {int(y.min())} to {int(y.max())}, but the model has "
                        f"{outputs} outputs (labels 0..{outputs - 1}): build it with num_classes={int(y.max()) + 1} "
                        "or more (--num-classes)")
    if y.numel():  # float (one-hot, soft) labels, or a label count that is not the batch's
        check_labels(f"{where}'s labels", y, outputs, int(x.shape[0]), DataError)
