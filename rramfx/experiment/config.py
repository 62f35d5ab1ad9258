"""What a sweep trains and evaluates: `SweepConfig`, plain data that a results folder records and
every cell of the sweep receives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rramfx.checks import unit_rate
from rramfx.crossbar.faults import FaultModel
from rramfx.errors import RramfxError, SweepError
from rramfx.experiment.cells import Chips, DataSpec, Recalibration, TrainKey, TrainSettings, cell_policy
from rramfx.models.recipe import ModelRecipe
from rramfx.policy import Policy
from rramfx.training.fastpath import PRECISIONS
from rramfx.training.loop import SCHEDULES, TrainOptions

__all__ = ["GRID_FIELDS", "SweepConfig"]

#: The fields that list the grid; a resumed sweep may change them.
GRID_FIELDS = ("drop_rates", "fault_rates", "seeds")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep trains and evaluates. Rates are fractions in [0, 1).

    ``model``: a model spec (reference name, ``timm:NAME``, ``tv:NAME``, ``pkg.module:factory``), built
    with ``num_classes``/``in_chans`` (default: the dataset's). ``width`` multiplies the channels: a
    reference model is built that wide, other models are widened by the policy's ``widen`` pass.
    ``policy``: the base policy (placement rules, overrides, structural passes) as a dict; each cell
    sets its drop rate; ``rram_1x1`` moves 1x1 convolutions to RRAM (the paper's Fig. 7 comparison)
    and ``pad_shortcuts`` pads 1x1 shortcut convolutions to 3x3 so they go to RRAM (its Fig. 6c).
    ``sa0_fraction``: share of the faulty cells that are SA0 rather than SA1 (0: the paper's setting);
    the inference scale p' is the SA1 rate. ``recalibrate``: run Algorithm 1 at every fault rate over
    ``recal_batches`` training batches (None: one full pass, as the paper). ``compile``,
    ``channels_last``, ``precision``: `rramfx.train`'s speed options for every training (off: they pay
    on some models only, see benchmarks/README.md); ``channels_last`` also lays out every evaluate
    cell's model and batches so.
    """

    model: str = "resnet20"
    dataset: str = "fashion-mnist"
    drop_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    fault_rates: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    seeds: tuple[int, ...] = (0,)
    trials: int = 100
    chip_seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    augment: bool = True
    recalibrate: bool = True
    recal_batches: int | None = None
    sa0_fraction: float = 0.0
    width: float = 1.0
    rram_1x1: bool = False
    pad_shortcuts: bool = False
    policy: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    in_chans: int | None = None
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    data_dir: str | None = None
    compile: bool = False
    channels_last: bool = False
    precision: str | None = None

    def __post_init__(self) -> None:
        for name in ("drop_rates", "fault_rates"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise SweepError(f"SweepConfig.{name} must be a list of rates, got {values!r}")
            rates = tuple(sorted({unit_rate(f"SweepConfig.{name}", v, SweepError) for v in values}))
            if not rates:
                raise SweepError(f"SweepConfig.{name} needs at least one rate")
            object.__setattr__(self, name, rates)
        seeds = tuple(sorted(set(self.seeds)))
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise SweepError(f"SweepConfig.seeds must be non-negative ints, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        for name in ("trials", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise SweepError(f"SweepConfig.{name} must be a {'non-negative' if name == 'epochs' else 'positive'} "
                                 f"int, got {value!r}")
        for name in ("recal_batches", "num_classes", "in_chans", "image_size", "train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SweepError(f"SweepConfig.{name} must be a positive int or None, got {value!r}")
        if self.precision not in (None, *PRECISIONS):
            raise SweepError(f"SweepConfig.precision must be one of {PRECISIONS} or None, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise SweepError(f"SweepConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        unit_rate("SweepConfig.sa0_fraction", self.sa0_fraction, SweepError, allow_one=True)
        if not self.lr > 0 or not self.width > 0:
            raise SweepError(f"SweepConfig.lr and width must be positive, got lr={self.lr}, width={self.width}")
        try:
            object.__setattr__(self, "policy", Policy.from_dict(dict(self.policy)).to_dict())
        except RramfxError as e:
            raise SweepError(f"SweepConfig.policy: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready), as stored in ``results.json`` to check that a resumed sweep matches."""
        d = asdict(self)
        for name in GRID_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepConfig:
        """The configuration of `to_dict`'s data; unknown settings raise `SweepError` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SweepError(f"unknown sweep setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        d = dict(data)
        for name in GRID_FIELDS:
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)

    def fault_model(self, fault_rate: float) -> FaultModel:
        """The chips of one fault rate: SA1 and SA0 cells in the configured proportion."""
        return self.chips().fault_model(fault_rate)

    def chips(self) -> Chips:
        """The simulated chips every cell is evaluated on."""
        return Chips(self.trials, self.chip_seed, self.sa0_fraction)

    def base_policy(self) -> Policy:
        """The policy every cell starts from: ``policy`` with no fault rate, and 1x1 convolutions on
        RRAM (``rram_1x1``) or 1x1 shortcuts padded to 3x3 (``pad_shortcuts``) when asked."""
        d = {**self.policy, "fault_rate": 0.0}
        if self.rram_1x1:
            d["conv_1x1"] = "rram"
        if self.pad_shortcuts:
            d["pad_1x1"] = ["shortcut"]
        return Policy.from_dict(d)

    def cell_policy(self, drop_rate: float) -> Policy:
        """The policy a model of this drop rate is prepared with (`rramfx.experiment.cells.cell_policy`)."""
        return cell_policy(TrainKey(ModelRecipe(self.model, width=self.width), drop_rate, 0), self.base_policy())

    def train_settings(self) -> TrainSettings:
        """What the sweep's trainings share: base policy, optimiser settings and data."""
        data = DataSpec(self.dataset, self.data_dir, self.image_size, self.train_subset, self.test_subset,
                        self.batch_size, self.augment)
        options = TrainOptions(self.epochs, lr=self.lr, weight_decay=self.weight_decay, schedule=self.schedule,
                               compile=self.compile, channels_last=self.channels_last, precision=self.precision)
        return TrainSettings(self.base_policy(), options, data)

    def recalibration(self, seed: int) -> Recalibration | None:
        """BN recalibration of a model of training seed ``seed`` (None when ``recalibrate`` is off)."""
        return Recalibration(self.recal_batches, seed) if self.recalibrate else None
