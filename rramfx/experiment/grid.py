"""The paper's experiment as one call: train one model per (drop rate, training seed), then for every
fault rate recalibrate its BatchNorm statistics (optionally) and evaluate it on simulated chips.

Everything lands in one folder, ``out_dir``:

- ``results.json``: the configuration and one row per (drop rate, fault rate, seed), written after
  every cell, so an interrupted sweep resumes where it stopped;
- ``models/drop<p>_seed<s>.pt``: each trained model (`load_prepared` reads it), and while it trains a
  ``.ckpt`` training checkpoint that `train` resumes from;
- the report (`rramfx.report.write_report`): CSV, markdown table, heatmap and best-drop-rate plot.

Re-running with more drop rates, fault rates or seeds adds the missing cells; changing anything else
(model, epochs, trials, ...) would mix incomparable results, so it is refused with the differences.
All cells evaluate the same chips (chip ``i`` is drawn from ``chip_seed(config.chip_seed, i)``), so
differences between drop rates are not blurred by different chips.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from rramfx.checks import unit_rate
from rramfx.crossbar.faults import FaultModel
from rramfx.errors import ArgumentTypeError, ResultsFileError, RramfxError, SweepError, TrainError
from rramfx.evaluation.chips import MonteCarloResult
from rramfx.experiment.cells import (
    CellData,
    Chips,
    DataSpec,
    Recalibration,
    TrainKey,
    TrainSettings,
    cell_policy,
    evaluate_cell,
    train_cell,
)
from rramfx.experiment.report import RESULTS_FILE, write_report
from rramfx.models.recipe import ModelRecipe
from rramfx.policy import Policy
from rramfx.training.loop import SCHEDULES, TrainOptions
from rramfx.training.saved import load_prepared

_GRID = ("drop_rates", "fault_rates", "seeds")
_FORMAT = "rramfx.Sweep/1"


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
    ``recal_batches`` training batches (None: one full pass, as the paper).
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
        for name in _GRID:
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
        for name in _GRID:
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
        options = TrainOptions(self.epochs, lr=self.lr, weight_decay=self.weight_decay, schedule=self.schedule)
        return TrainSettings(self.base_policy(), options, data)

    def recalibration(self, seed: int) -> Recalibration | None:
        """BN recalibration of a model of training seed ``seed`` (None when ``recalibrate`` is off)."""
        return Recalibration(self.recal_batches, seed) if self.recalibrate else None


def _key(row: Mapping[str, Any]) -> tuple[float, float, int]:
    return round(float(row["drop_rate"]), 6), round(float(row["fault_rate"]), 6), int(row["seed"])


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _check_compatible(stored: Mapping[str, Any], config: SweepConfig, path: Path) -> None:
    current = config.to_dict()
    diffs = [f"{k}: {stored.get(k)!r} there, {current[k]!r} now" for k in current
             if k not in _GRID and stored.get(k) != current[k]]
    if diffs:
        raise SweepError(
            f"'{path}' holds results of a different sweep ({'; '.join(diffs)}). Choose another output "
            "folder, or delete it to start over; only drop rates, fault rates and seeds may change on resume."
        )


def sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    loaders: tuple[Iterable[Any], Iterable[Any]] | None = None,
    model_fn: Callable[[], nn.Module] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Run (or resume) the sweep ``config`` into ``out_dir``; returns all result rows.

    ``loaders``: ``(train_loader, test_loader)`` to use instead of loading ``config.dataset``
    (which then only labels the results); the training loader also feeds BN recalibration.
    ``model_fn``: builds the untrained model instead of ``config.model`` (which then only labels it);
    it is called once per (drop rate, seed) after seeding torch with the seed. ``log`` gets one line per
    finished step (None: silent); ``progress`` shows tqdm bars for training, recalibration and chips.
    Each (drop rate, seed) is one `train_cell`, each fault rate of it one `evaluate_cell`.
    """
    if not isinstance(config, SweepConfig):
        raise ArgumentTypeError(f"sweep: config must be an rramfx.SweepConfig, got {type(config).__name__}")
    folder = _Folder(Path(out_dir), config)
    say = log or (lambda _msg: None)
    run = _Run(config, folder, torch.device(device), loaders, model_fn, progress, say)
    cells = [(d, s) for d in config.drop_rates for s in config.seeds]
    for n, (drop, seed) in enumerate(cells, 1):
        todo = folder.missing(drop, seed)
        if todo:
            run.cell(drop, seed, todo, f"[{n}/{len(cells)}]")
    if folder.rows and (len(folder.rows) > folder.stored or not (folder.path / "best_drop_rate.png").is_file()):
        folder.save()
        paths = write_report(folder.path)
        say(f"report: {', '.join(str(p) for p in paths.values())}")
    return folder.wanted()


class _Folder:
    """A sweep's output folder: the result rows (those stored earlier first), which are missing, and
    ``results.json``, rewritten after every new row."""

    def __init__(self, path: Path, config: SweepConfig):
        self.path, self.config = path, config
        (path / "models").mkdir(parents=True, exist_ok=True)
        self.results = path / RESULTS_FILE
        self.rows = _stored_rows(self.results, config)
        self.done = {_key(r) for r in self.rows}
        self.stored = len(self.rows)

    def missing(self, drop: float, seed: int) -> list[float]:
        """The configured fault rates that have no row for (``drop``, ``seed``) yet."""
        return [f for f in self.config.fault_rates if (round(drop, 6), round(f, 6), seed) not in self.done]

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.done.add(_key(row))
        self.save()

    def save(self) -> None:
        merged = self.config.to_dict()  # with the grid of everything in the file, not only of this call
        for name, column in (("drop_rates", "drop_rate"), ("fault_rates", "fault_rate"), ("seeds", "seed")):
            merged[name] = sorted({r[column] for r in self.rows} | set(merged[name]))
        _write_json(self.results, {"format": _FORMAT, "config": merged, "rows": self.rows})

    def wanted(self) -> list[dict[str, Any]]:
        """The rows of this call's grid."""
        c = self.config
        wanted = {(round(d, 6), round(f, 6), s) for d in c.drop_rates for f in c.fault_rates for s in c.seeds}
        return [r for r in self.rows if _key(r) in wanted]


class _Run:
    """The cells of one sweep call: their data, settings and device, and how one (drop rate, seed) is
    trained (or reloaded) and evaluated at its missing fault rates."""

    def __init__(self, config: SweepConfig, folder: _Folder, device: torch.device,
                 loaders: tuple[Iterable[Any], Iterable[Any]] | None, model_fn: Callable[[], nn.Module] | None,
                 progress: bool, say: Callable[[str], None]):
        self.config, self.folder, self.device, self.model_fn, self.progress, self.say = (
            config, folder, device, model_fn, progress, say)
        self.settings = config.train_settings()
        self.data = CellData(self.settings.data, device, num_classes=config.num_classes, in_chans=config.in_chans,
                             loaders=loaders)

    def key(self, drop: float, seed: int) -> TrainKey:
        recipe = ModelRecipe(self.config.model, self.data.num_classes, self.data.in_chans, self.config.width)
        return TrainKey(recipe, drop, seed)

    def cell(self, drop: float, seed: int, fault_rates: list[float], label: str) -> None:
        """Train (or reload) the model of (``drop``, ``seed``) and add one row per fault rate."""
        gm, clean, train_seconds = self.trained(self.key(drop, seed))
        self.say(f"{label} drop rate {drop:g}, seed {seed}: fault-free accuracy {100 * clean:.2f}%"
                 + (f" (trained in {train_seconds:.0f} s)" if train_seconds else " (trained earlier)"))
        recal_loader = self.data.recal_loader(seed)
        for fault in fault_rates:
            start = time.perf_counter()
            result = evaluate_cell(gm, fault, self.config.chips(), self.data.test_loader,
                                   recalibration=self.config.recalibration(seed), recal_loader=recal_loader,
                                   progress=self.progress)
            row = _row(drop, fault, seed, result, clean, train_seconds, time.perf_counter() - start)
            self.folder.add(row)
            self.say(f"    fault rate {fault:g}: {100 * row['accuracy']:.2f}% ± {100 * row['chip_std']:.2f} over "
                     f"{row['trials']} chips ({row['eval_seconds']:.1f} s)")

    def trained(self, key: TrainKey) -> tuple[fx.GraphModule, float, float]:
        """The trained model of ``key``, its fault-free accuracy and training seconds (0 when it was
        loaded from ``models/``, where a newly trained one is saved)."""
        path = self.folder.path / "models" / f"drop{key.drop_rate:g}_seed{key.seed}.pt"
        if path.is_file():
            custom = None
            if self.model_fn is not None:
                torch.manual_seed(key.seed)
                custom = self.model_fn()
            gm, record = load_prepared(path, map_location=self.device, model=custom)
            return gm, float(record["info"]["clean_accuracy"]), 0.0
        ckpt = path.with_suffix(".ckpt")
        trained = train_cell(key, self.settings, self.data, device=self.device, checkpoint=ckpt,
                             model_fn=self.model_fn, progress=self.progress)
        trained.save(path)
        ckpt.unlink(missing_ok=True)
        if math.isnan(trained.clean_accuracy):
            raise TrainError(f"drop rate {key.drop_rate:g}, seed {key.seed}: the trained model's accuracy is NaN")
        return trained.gm, trained.clean_accuracy, trained.seconds


def _row(drop: float, fault: float, seed: int, result: MonteCarloResult, clean: float, train_seconds: float,
         eval_seconds: float) -> dict[str, Any]:
    """One result row of ``results.json`` (the chip accuracies included)."""
    return {
        "drop_rate": drop, "fault_rate": fault, "seed": seed, "accuracy": result.mean,
        "chip_std": result.std, "chip_min": result.min, "chip_max": result.max,
        "ci95_low": result.ci95[0], "ci95_high": result.ci95[1], "clean_accuracy": clean,
        "trials": result.trials, "samples": result.samples, "train_seconds": train_seconds,
        "eval_seconds": eval_seconds, "accuracies": list(result.accuracies),
    }


def _stored_rows(results_path: Path, config: SweepConfig) -> list[dict[str, Any]]:
    """The rows already in ``results_path`` (none if it does not exist), after checking they come from
    a sweep compatible with ``config``."""
    if not results_path.is_file():
        return []
    try:
        stored = json.loads(results_path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsFileError(f"'{results_path}' is not valid JSON ({e}); delete it to start over") from e
    _check_compatible(stored.get("config", {}), config, results_path)
    return list(stored.get("rows", []))


__all__ = ["SweepConfig", "SweepError", "sweep"]
