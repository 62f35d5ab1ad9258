"""Training as a transaction: the data is checked against the model before anything changes, and a run
that fails for any reason hands the model back exactly as it came.

`TrainingTransaction` snapshots every parameter, buffer (persistent or not) and gradient of a model and
every module's training flag; on leaving with an exception (a bad batch deep in an epoch, a checkpoint
that does not fit, a loss or weights that became non-finite, ``KeyboardInterrupt``) it copies them back,
so BatchNorm statistics, weights and ``.training`` are those of before the call. On a clean exit it
checks the weights are finite (a diverged run is refused, not returned). `check_first_batch` runs the
first batch of a loader through the model in eval mode, without gradients, to refuse images of the
wrong rank or channel count and labels that are not class indices of the model's outputs before
training touches anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rramfx.data.batches import check_batch_fits, loader_classes, split_batch
from rramfx.errors import ArgumentTypeError, DataError, TrainError
from rramfx.graph.modules import eval_mode, module_device
from rramfx.tensor_checks import check_example_inputs, check_labels, input_hint, unbatched

__all__ = ["TrainingTransaction", "check_first_batch"]


class TrainingTransaction:
    """``with TrainingTransaction(model): ...``: on an exception, restore ``model``'s parameters,
    buffers, gradients and training flags to their values at entry, then let the exception go on; on a
    clean exit, refuse non-finite parameters or buffers with `TrainError` (after restoring)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> TrainingTransaction:
        m = self.model
        self._tensors = {name: t.detach().clone() for name, t in _tensors(m)}
        self._grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in m.named_parameters()}
        self._flags = {name: mod.training for name, mod in m.named_modules()}
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            bad = next((name for name, t in _tensors(self.model)
                        if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
            if bad is not None:
                self.restore()
                raise TrainError(f"training diverged: {bad} became non-finite (inf or nan); the model was restored "
                                 "to its state before training. Lower the learning rate or the drop rate")
            return False
        self.restore()
        return False

    def restore(self) -> None:
        """Copy the snapshot back into the model (in place: the tensors keep their identity)."""
        m = self.model
        with torch.no_grad():
            for name, t in _tensors(m):
                saved = self._tensors.get(name)
                if saved is not None and saved.shape == t.shape:
                    t.copy_(saved)
        for name, p in m.named_parameters():
            saved = self._grads.get(name)
            p.grad = None if saved is None else saved.clone()
        for name, mod in m.named_modules():
            if name in self._flags:
                mod.training = self._flags[name]


def _tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    return itertools.chain(model.named_parameters(), model.named_buffers())


def check_first_batch(model: nn.Module, loader: Iterable[Any], name: str = "train_loader") -> None:
    """Run ``loader``'s first batch through ``model`` (eval mode, no gradients, two samples) and check
    its labels: `DataError` naming ``name`` when the images do not fit the model (rank, channels, size,
    dtype) or the labels are not integer classes below the model's output count. ``model`` is not
    changed (its training flags are restored, eval mode updates no statistics)."""
    batch = next(iter(loader), None)
    if batch is None:
        raise DataError(f"{name} yielded no batches")
    if isinstance(batch, torch.Tensor):
        raise ArgumentTypeError(f"{name} must yield (images, labels) batches or dicts holding both, got a tensor")
    x, y = split_batch(batch)
    (x,) = check_example_inputs(f"{name}'s images", x)
    hint = input_hint(model)
    if unbatched(model, x):
        raise DataError(f"{name}'s images have shape {tuple(x.shape)}, one sample without a batch dimension; "
                        f"the model takes {hint}")
    if not x.is_floating_point():
        raise DataError(f"{name}'s images are {x.dtype}; the model takes floating-point images "
                        "(convert with x.float() / 255)")
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x[:2].to(module_device(model)))
    except Exception as e:  # whatever torch raises for a batch that does not fit
        raise DataError(f"{name}'s images of shape {tuple(x.shape)} do not run through the model "
                        f"({type(e).__name__}: {str(e)[:200]}); it takes {hint or 'another shape'}") from e
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        return  # not a classifier's (N, classes) logits: the labels cannot be checked against it
    check_labels(f"{name}'s labels", y, int(out.shape[1]), int(x.shape[0]), DataError)
    check_batch_fits(model, batch, classes=loader_classes(loader), where=name, outputs=int(out.shape[1]))
    if not math.isfinite(float(x[:2].float().abs().max())):
        raise DataError(f"{name}'s images hold inf or nan values")
