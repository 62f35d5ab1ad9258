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

import copy
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
from rramfx.errors import RramfxError
from rramfx.evaluation.chips import evaluate, monte_carlo
from rramfx.evaluation.recalibrate import recalibrate_bn
from rramfx.experiment.report import RESULTS_FILE, write_report
from rramfx.graph.record import rramfx_meta
from rramfx.policy import Policy
from rramfx.training.loop import SCHEDULES, train
from rramfx.training.saved import load_prepared, save_prepared

_GRID = ("drop_rates", "fault_rates", "seeds")
_FORMAT = "rramfx.Sweep/1"


class SweepError(RramfxError, ValueError):
    """A sweep configuration is invalid, or does not match the results already in its folder."""


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
        d = asdict(self)
        for name in _GRID:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepConfig:
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
        sa0 = fault_rate * self.sa0_fraction
        return FaultModel(sa1=fault_rate - sa0, sa0=sa0)

    def cell_policy(self, drop_rate: float) -> Policy:
        """The policy a model of this drop rate is prepared with."""
        d = dict(self.policy)
        d["drop_rate"] = drop_rate
        d["fault_rate"] = 0.0
        if self.rram_1x1:
            d["conv_1x1"] = "rram"
        if self.pad_shortcuts:
            d["pad_1x1"] = ["shortcut"]
        if self.width != 1.0 and ":" in self.model:
            d["widen"] = self.width  # reference models are built wide instead
        return Policy.from_dict(d)


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


def _default_model(config: SweepConfig, num_classes: int, in_chans: int) -> nn.Module:
    from rramfx.models.spec import create_model

    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if config.width != 1.0 and ":" not in config.model:
        kwargs["width"] = config.width  # a reference model, built wide (other models: Policy.widen)
    return create_model(config.model, **kwargs)


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
    """
    if not isinstance(config, SweepConfig):
        raise TypeError(f"sweep expects a SweepConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    rows = _stored_rows(results_path, config)
    done = {_key(r) for r in rows}
    stored_rows = len(rows)
    say = log or (lambda _msg: None)
    device = torch.device(device)
    data = _Data(config, device, loaders)

    def save_rows() -> None:
        merged = config.to_dict()  # with the grid of everything in the file, not only of this call
        for name, column in (("drop_rates", "drop_rate"), ("fault_rates", "fault_rate"), ("seeds", "seed")):
            merged[name] = sorted({r[column] for r in rows} | set(merged[name]))
        _write_json(results_path, {"format": _FORMAT, "config": merged, "rows": rows})

    cells = [(d, s) for d in config.drop_rates for s in config.seeds]
    for n, (drop, seed) in enumerate(cells, 1):
        todo = [f for f in config.fault_rates if (round(drop, 6), round(f, 6), seed) not in done]
        if not todo:
            continue
        train_loader, recal_loader = data.train_loaders(seed)
        gm, clean, train_seconds = _trained(config, drop, seed, out_dir, device, train_loader, data.test_loader,
                                            data.num_classes, data.in_chans, model_fn, progress)
        say(f"[{n}/{len(cells)}] drop rate {drop:g}, seed {seed}: fault-free accuracy {100 * clean:.2f}%"
            + (f" (trained in {train_seconds:.0f} s)" if train_seconds else " (trained earlier)"))
        for fault in todo:
            row = _evaluate_cell(config, gm, drop, fault, seed, recal_loader, data.test_loader, progress)
            row.update(clean_accuracy=clean, train_seconds=train_seconds)
            rows.append(row)
            done.add(_key(row))
            save_rows()
            say(f"    fault rate {fault:g}: {100 * row['accuracy']:.2f}% ± {100 * row['chip_std']:.2f} over "
                f"{row['trials']} chips ({row['eval_seconds']:.1f} s)")
    if rows and (len(rows) > stored_rows or not (out_dir / "best_drop_rate.png").is_file()):
        save_rows()
        paths = write_report(out_dir)
        say(f"report: {', '.join(str(p) for p in paths.values())}")
    wanted = {(round(d, 6), round(f, 6), s)
              for d in config.drop_rates for f in config.fault_rates for s in config.seeds}
    return [r for r in rows if _key(r) in wanted]


def _stored_rows(results_path: Path, config: SweepConfig) -> list[dict[str, Any]]:
    """The rows already in ``results_path`` (none if it does not exist), after checking they come from
    a sweep compatible with ``config``."""
    if not results_path.is_file():
        return []
    try:
        stored = json.loads(results_path.read_text())
    except json.JSONDecodeError as e:
        raise SweepError(f"'{results_path}' is not valid JSON ({e}); delete it to start over") from e
    _check_compatible(stored.get("config", {}), config, results_path)
    return list(stored.get("rows", []))


class _Data:
    """The sweep's data: the configured dataset's loaders, or the caller's ``(train, test)`` loaders."""

    def __init__(self, config: SweepConfig, device: torch.device,
                 loaders: tuple[Iterable[Any], Iterable[Any]] | None):
        self.config, self.device, self.loaders = config, device, loaders
        if loaders is not None:
            self.num_classes = config.num_classes or 10
            self.in_chans = config.in_chans or 3
            self.test_loader: Iterable[Any] = loaders[1]
            return
        from rramfx.data.loader import ImageLoader
        from rramfx.data.registry import load_dataset

        self.train_data = load_dataset(config.dataset, "train", config.data_dir).subset(config.train_subset, seed=0)
        test_data = load_dataset(config.dataset, "test", config.data_dir).subset(config.test_subset, seed=1)
        self.num_classes = config.num_classes or self.train_data.num_classes
        self.in_chans = config.in_chans or self.train_data.in_chans
        self.test_loader = ImageLoader(test_data, max(256, config.batch_size), image_size=config.image_size,
                                       in_chans=self.in_chans, device=device)

    def train_loaders(self, seed: int) -> tuple[Iterable[Any], Iterable[Any]]:
        """The training loader of one training seed, and the loader that feeds BN recalibration."""
        if self.loaders is not None:
            return self.loaders[0], self.loaders[0]
        from rramfx.data.loader import ImageLoader

        c, data = self.config, self.train_data
        train_loader = ImageLoader(data, c.batch_size, shuffle=True, augment=c.augment, image_size=c.image_size,
                                   in_chans=self.in_chans, drop_last=len(data) > c.batch_size, seed=seed,
                                   device=self.device)
        recal_loader = ImageLoader(data, c.batch_size, shuffle=True, image_size=c.image_size, in_chans=self.in_chans,
                                   seed=seed + 7777, device=self.device)
        return train_loader, recal_loader


def _evaluate_cell(config: SweepConfig, gm: fx.GraphModule, drop: float, fault: float, seed: int,
                   recal_loader: Iterable[Any], test_loader: Iterable[Any], progress: bool) -> dict[str, Any]:
    """One result row: a copy of the trained model, recalibrated for the fault rate (when configured),
    evaluated on the sweep's chips."""
    start = time.perf_counter()
    chip_model = copy.deepcopy(gm)
    p_prime = config.fault_model(fault).sa1
    if config.recalibrate:
        recalibrate_bn(chip_model, recal_loader, p_prime, batches=config.recal_batches, seed=seed, progress=progress)
    result = monte_carlo(chip_model, test_loader, config.fault_model(fault), config.trials, config.chip_seed,
                         fault_rate=p_prime, progress=progress)
    return {
        "drop_rate": drop, "fault_rate": fault, "seed": seed, "accuracy": result.mean,
        "chip_std": result.std, "chip_min": result.min, "chip_max": result.max,
        "ci95_low": result.ci95[0], "ci95_high": result.ci95[1], "clean_accuracy": None,
        "trials": result.trials, "samples": result.samples, "train_seconds": None,
        "eval_seconds": time.perf_counter() - start, "accuracies": list(result.accuracies),
    }


def _trained(config: SweepConfig, drop: float, seed: int, out_dir: Path, device: torch.device,
             train_loader: Iterable[Any], test_loader: Iterable[Any], num_classes: int, in_chans: int,
             model_fn: Callable[[], nn.Module] | None, progress: bool) -> tuple[fx.GraphModule, float, float]:
    """The trained model of one (drop rate, seed): loaded when saved earlier, else trained and saved."""
    path = out_dir / "models" / f"drop{drop:g}_seed{seed}.pt"
    if path.is_file():
        custom = None
        if model_fn is not None:
            torch.manual_seed(seed)
            custom = model_fn()
        gm, record = load_prepared(path, map_location=device, model=custom)
        return gm, float(record["info"]["clean_accuracy"]), 0.0
    torch.manual_seed(seed)
    model = model_fn() if model_fn is not None else _default_model(config, num_classes, in_chans)
    from rramfx.preparation import prepare

    policy = config.cell_policy(drop)
    example = None
    if getattr(policy, "structural", False):  # widening and padding read tensor shapes
        example = next(iter(train_loader))[0][:2].cpu()
    gm = prepare(model, policy, example_inputs=example).to(device)
    ckpt = path.with_suffix(".ckpt")
    start = time.perf_counter()
    history = train(gm, train_loader, config.epochs, lr=config.lr, weight_decay=config.weight_decay,
                    schedule=config.schedule, checkpoint=ckpt, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    clean = evaluate(gm, test_loader)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if config.width != 1.0 and ":" not in config.model:
        kwargs["width"] = config.width
    save_prepared(path, gm, model=config.model, model_kwargs=kwargs, policy=rramfx_meta(gm).get("policy"),
                  input_shape=tuple(example.shape[1:]) if example is not None else None,
                  info={"clean_accuracy": clean, "history": history, "train_seconds": seconds})
    ckpt.unlink(missing_ok=True)
    if math.isnan(clean):
        raise SweepError(f"drop rate {drop:g}, seed {seed}: the trained model's accuracy is NaN")
    return gm, clean, seconds


__all__ = ["SweepConfig", "SweepError", "sweep"]
