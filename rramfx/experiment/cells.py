"""One cell of the experiment: training one model, and evaluating one trained model at one fault rate.

`rramfx train`, `rramfx evaluate` and `rramfx.sweep` all do their work through these two functions, so
a command and the sweep given the same key compute the same numbers:

- `train_cell` is keyed by a `TrainKey`: the model recipe (spec, classes, channels, width), the
  DropConnect rate and the training seed. What every training of an experiment shares (base policy,
  optimiser settings, data) is its `TrainSettings`.
- `evaluate_cell` is keyed by a trained model, a fault rate and its `Chips` (how many simulated chips,
  from which seed, with which share of SA0 cells); `Recalibration` asks for BatchNorm recalibration.

Both are seeded functions of their arguments: the training seed seeds model initialisation,
DropConnect masks and the loader's order; chips come from the chip seed; recalibration draws its
masks from its own seed in a forked random state. Keys and settings are frozen plain data, so a cell
can be computed anywhere (another process, another machine) and gives the same result.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from rramfx.crossbar.faults import FaultModel
from rramfx.data.batches import loader_classes
from rramfx.data.loader import ImageLoader
from rramfx.data.registry import load_dataset
from rramfx.engines import positive_count
from rramfx.errors import ArgumentError
from rramfx.evaluation.chips import MonteCarloResult, evaluate, monte_carlo
from rramfx.evaluation.parallel_chips import parallel_monte_carlo
from rramfx.evaluation.recalibrate import recalibrate_bn
from rramfx.experiment.onnxruntime_cell import check_runtime, onnxruntime_chips
from rramfx.graph.record import rramfx_meta
from rramfx.models.recipe import ModelRecipe
from rramfx.policy import Policy
from rramfx.preparation import prepare
from rramfx.training.fastpath import channels_last_model
from rramfx.training.loop import TrainOptions, run_training
from rramfx.training.saved import save_prepared

__all__ = [
    "CellData",
    "Chips",
    "DataSpec",
    "Recalibration",
    "TrainKey",
    "TrainSettings",
    "TrainedCell",
    "cell_policy",
    "evaluate_cell",
    "train_cell",
]

#: Offset of the recalibration loader's shuffle seed from the training seed (a different order).
_RECAL_SEED_OFFSET = 7777


@dataclass(frozen=True)
class DataSpec:
    """The data of an experiment: dataset name and folder, image side (None: as stored), seeded subsets
    of the training and test splits (None: all), training batch size and whether to augment."""

    dataset: str
    data_dir: str | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    batch_size: int = 128
    augment: bool = True


class CellData:
    """The loaders of an experiment's cells: from a `DataSpec`, or the caller's ``(train, test)``
    loaders (then ``num_classes``/``in_chans`` default to 10/3). The dataset is read once; each
    training seed gets its own shuffled loader, and BN recalibration one in another order."""

    def __init__(self, spec: DataSpec, device: str | torch.device = "cpu", *, num_classes: int | None = None,
                 in_chans: int | None = None, loaders: tuple[Iterable[Any], Iterable[Any]] | None = None):
        self.spec, self.device, self.loaders = spec, torch.device(device), loaders
        if loaders is not None:  # the class count of the data where it says (dataset.classes)
            classes = loader_classes(loaders[0])
            self.num_classes, self.in_chans = num_classes or (len(classes) if classes else 10), in_chans or 3
            self.test_loader: Iterable[Any] = loaders[1]
            return
        read = {"root": spec.data_dir, "image_size": spec.image_size}
        self.train_data = load_dataset(spec.dataset, "train", **read).subset(spec.train_subset, seed=0)
        self.test_data = load_dataset(spec.dataset, "test", **read).subset(spec.test_subset, seed=1)
        self.num_classes = num_classes or self.train_data.num_classes
        self.in_chans = in_chans or self.train_data.in_chans
        self.test_loader = ImageLoader(self.test_data, max(256, spec.batch_size), image_size=spec.image_size,
                                       in_chans=self.in_chans, device=self.device)

    def train_loader(self, seed: int) -> Iterable[Any]:
        """The shuffled (and, as the spec says, augmented) training loader of training seed ``seed``."""
        if self.loaders is not None:
            return self.loaders[0]
        s, data = self.spec, self.train_data
        return ImageLoader(data, s.batch_size, shuffle=True, augment=s.augment, image_size=s.image_size,
                           in_chans=self.in_chans, drop_last=len(data) > s.batch_size, seed=seed, device=self.device)

    def recal_loader(self, seed: int) -> Iterable[Any]:
        """The loader BN recalibration reads for training seed ``seed`` (training images, not augmented)."""
        if self.loaders is not None:
            return self.loaders[0]
        s = self.spec
        return ImageLoader(self.train_data, s.batch_size, shuffle=True, image_size=s.image_size,
                           in_chans=self.in_chans, seed=seed + _RECAL_SEED_OFFSET, device=self.device)


@dataclass(frozen=True)
class TrainKey:
    """What distinguishes one training of an experiment from another."""

    recipe: ModelRecipe
    drop_rate: float
    seed: int


@dataclass(frozen=True)
class TrainSettings:
    """What every training of an experiment shares: the base ``policy`` (each cell sets its drop rate
    on it), the optimiser ``options`` (their seed is replaced by the cell's) and the ``data``."""

    policy: Policy
    options: TrainOptions
    data: DataSpec


def cell_policy(key: TrainKey, base: Policy) -> Policy:
    """The policy the model of ``key`` is prepared with: ``base`` at the cell's drop rate, widened by
    ``Policy.widen`` when the recipe's width is not built into the model (`ModelRecipe.policy`)."""
    return key.recipe.policy(Policy.from_dict({**base.to_dict(), "drop_rate": key.drop_rate}))


@dataclass
class TrainedCell:
    """A trained model (``gm``, in eval mode) and what its training measured: fault-free test
    ``clean_accuracy``, per-epoch ``history``, training ``seconds``, and the ``input_shape`` (C, H, W)
    it was prepared for."""

    key: TrainKey
    gm: fx.GraphModule
    clean_accuracy: float
    history: list[dict[str, float]]
    seconds: float
    input_shape: tuple[int, ...]

    def save(self, path: str | Path, info: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
        """Write the model with `save_prepared` (its recipe, policy, input shape and weights); the
        record's ``info`` holds the clean accuracy, history, seed and training time, plus ``info``;
        ``data`` is the data spec (`save_prepared`)."""
        recipe = self.key.recipe
        return save_prepared(path, self.gm, model=recipe.spec, model_kwargs=recipe.model_kwargs(),
                             policy=rramfx_meta(self.gm).get("policy"), input_shape=self.input_shape,
                             info={**(info or {}), "clean_accuracy": self.clean_accuracy, "history": self.history,
                                   "seed": self.key.seed, "train_seconds": self.seconds}, data=data)


def train_cell(key: TrainKey, settings: TrainSettings, data: CellData | None = None, *,
               device: str | torch.device = "cpu", checkpoint: str | Path | None = None, resume: bool = True,
               model_fn: Callable[[], nn.Module] | None = None, progress: bool = False) -> TrainedCell:
    """Prepare and train the model of ``key`` under ``settings``, and measure its fault-free accuracy.

    Torch is seeded with the training seed, then the model is built (by ``model_fn`` instead of the
    recipe's spec when given) and prepared with `cell_policy` on the first two training images (their
    shape is what structural passes and `load_prepared` need), moved to ``device`` and trained with
    the cell's seed. ``data``: the experiment's loaders (default: read ``settings.data``).
    ``checkpoint``/``resume``: as `rramfx.train`.
    """
    device = torch.device(device)
    if data is None:
        data = CellData(settings.data, device, num_classes=key.recipe.num_classes, in_chans=key.recipe.in_chans)
    train_loader = data.train_loader(key.seed)
    torch.manual_seed(key.seed)
    model = model_fn() if model_fn is not None else key.recipe.create()
    example = next(iter(train_loader))[0][:2].cpu()
    gm = prepare(model, cell_policy(key, settings.policy), example_inputs=example).to(device)
    start = time.perf_counter()
    history = run_training(gm, train_loader, replace(settings.options, seed=key.seed), checkpoint=checkpoint,
                           resume=resume, progress=progress)
    seconds = time.perf_counter() - start
    return TrainedCell(key, gm, evaluate(gm, data.test_loader), history, seconds, tuple(example.shape[1:]))


@dataclass(frozen=True)
class Chips:
    """The simulated chips of an evaluation: ``trials`` chips, chip ``i`` drawn from
    ``chip_seed(seed, i)``, a share ``sa0_fraction`` of the faulty cells stuck at SA0 (0: the paper)."""

    trials: int = 100
    seed: int = 0
    sa0_fraction: float = 0.0

    def fault_model(self, fault_rate: float) -> FaultModel:
        """The chips of one fault rate: SA1 and SA0 cells in the configured proportion."""
        sa0 = fault_rate * self.sa0_fraction
        return FaultModel(sa1=fault_rate - sa0, sa0=sa0)


@dataclass(frozen=True)
class Recalibration:
    """BatchNorm recalibration before the chips (Algorithm 1): over ``batches`` batches of the
    recalibration loader (None: all of it), DropConnect masks drawn from ``seed``."""

    batches: int | None = None
    seed: int = 0


def evaluate_cell(gm: fx.GraphModule, fault_rate: float, chips: Chips, test_loader: Iterable[Any], *,
                  recalibration: Recalibration | None = None, recal_loader: Iterable[Any] | None = None,
                  workers: int = 1, threads: int | None = None, progress: bool = False, first: int = 0,
                  trials: int | None = None, channels_last: bool = False, runtime: str = "torch") -> MonteCarloResult:
    """The accuracy of the trained ``gm`` on ``chips`` at ``fault_rate``, measured on a copy (``gm`` is
    not changed): recalibrated for p' (the SA1 rate) from ``recal_loader`` when ``recalibration`` is
    given, then evaluated on every chip with the 1/(1-p') inference scale. ``workers``/``threads``:
    the chips in blocks on that many local worker processes (`parallel_monte_carlo`, the same numbers);
    the default, 1 worker and no thread count, evaluates them in this process. ``first``/``trials``:
    only chips ``first`` .. ``first + trials - 1`` of ``chips`` (default: all), one block of a cell whose
    chips are split (the blocks' accuracies, put together, are the whole cell's). ``channels_last``:
    the copy and its batches in channels-last memory format (`channels_last_model`; faster on CPUs
    where training with it is, the figures differ by float rounding). ``runtime``: ``"torch"`` (default)
    or ``"onnxruntime"``: the same chips simulated in onnxruntime on the CPU
    (`rramfx.experiment.onnxruntime_cell`: faster per chip, plus an export per cell), all in one
    process on ``threads`` intra-op threads.

    A ``recal_loader`` with ``set_epoch`` (an `ImageLoader`) is set to epoch 0 first, so the batches
    recalibration reads, and the result, do not depend on what iterated the loader before (another
    fault rate, the training): the cell is a function of its arguments, whatever order cells run in."""
    fault_model = chips.fault_model(fault_rate)
    trials = chips.trials if trials is None else trials
    parallel = runtime == "torch" and (workers != 1 or threads is not None)
    positive_count("workers", workers, 1)  # checked before the recalibration, not after it
    positive_count("threads", threads, 1)
    check_runtime(runtime, workers=workers, first=first, channels_last=channels_last, gm=gm)
    chip_model = copy.deepcopy(gm)
    if channels_last:
        channels_last_model(chip_model)
    if recalibration is not None:
        if recal_loader is None:
            raise ArgumentError("evaluate_cell: recal_loader must be given when recalibration is asked for")
        if hasattr(recal_loader, "set_epoch"):
            recal_loader.set_epoch(0)
        recalibrate_bn(chip_model, recal_loader, fault_model.sa1, batches=recalibration.batches,
                       seed=recalibration.seed, progress=progress)
    if runtime == "onnxruntime":
        return onnxruntime_chips(chip_model, test_loader, fault_model, trials, chips.seed, threads=threads,
                                 progress=progress)
    if parallel:
        return parallel_monte_carlo(chip_model, test_loader, fault_model, trials, chips.seed, workers=workers,
                                    threads=threads, fault_rate=fault_model.sa1, progress=progress, first=first)
    return monte_carlo(chip_model, test_loader, fault_model, trials, chips.seed, fault_rate=fault_model.sa1,
                       progress=progress, first=first)
