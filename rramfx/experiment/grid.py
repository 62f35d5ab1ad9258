"""The paper's experiment as one call: train one model per (drop rate, training seed), then for every
fault rate recalibrate its BatchNorm statistics (optionally) and evaluate it on simulated chips, each
of those a cell (`rramfx.experiment.stages`) run by an engine (`rramfx.engines`: a local process pool
by default, Ray for a cluster, or this process).

Everything lands in one folder, ``out_dir``:

- ``models/drop<p>_seed<s>.pt``: each trained model (`load_prepared` reads it), and while it trains a
  ``.ckpt`` training checkpoint that `train` resumes from;
- ``cells/``: one checked result file per evaluate cell, written as the cell finishes;
- ``results.json``: the configuration and the rows of the current evaluation settings, assembled from
  the cell files; and the report (`rramfx.report.write_report`): CSV, markdown, heatmap, plots.

Re-running runs only the missing cells. More drop rates, fault rates or seeds add cells; other chips
(trials, chip seed, SA0 share, recalibration) evaluate the trained models anew without retraining;
changing how models are trained (model, epochs, ...) would mix incomparable results, so it is refused
with the differences. All cells evaluate the same chips (chip ``i`` is drawn from
``chip_seed(config.chip_seed, i)``), so differences between drop rates are not blurred by other chips.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rramfx.checks import writable_folder
from rramfx.engines import Engine, Outcome, Task, make_engine, positive_count
from rramfx.errors import ArgumentTypeError, CellsFailedError, ResultsFileError, SweepError
from rramfx.experiment.config import GRID_FIELDS, SweepConfig
from rramfx.experiment.report import RESULTS_FILE, write_report
from rramfx.experiment.stages import (
    EVAL_FIELDS,
    SweepJob,
    block_paths,
    cell_path,
    evaluate_stage,
    merge_block_files,
    merge_blocks,
    model_path,
    read_cell,
    train_stage,
)
from rramfx.files import write_atomic

__all__ = ["SweepConfig", "SweepError", "sweep"]

_FORMAT = "rramfx.Sweep/1"


def sweep(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    loaders: tuple[Iterable[Any], Iterable[Any]] | None = None,
    model_fn: Callable[[], nn.Module] | None = None,
    engine: str | Engine = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    cpus_per_cell: int = 1,
    gpus_per_cell: float = 0.0,
    chips_per_cell: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> list[dict[str, Any]]:
    """Run (or resume) the sweep ``config`` into ``out_dir``; returns the result rows of its grid.

    ``engine``: ``"local"`` (``workers`` processes of ``threads`` torch threads, default one per core),
    ``"ray"`` (a private Ray on 127.0.0.1, or the cluster at ``address``; each cell asks for
    ``cpus_per_cell``/``gpus_per_cell``), ``"serial"`` (this process), or an `rramfx.engines.Engine`.
    The numbers are the same on every engine at the same ``threads``. ``loaders``: ``(train, test)``
    loaders instead of ``config.dataset`` (which then only labels the results); ``model_fn``: builds
    the untrained model instead of ``config.model``, called after seeding torch with the seed; both go
    to the workers, so they must be picklable (a top-level function or class) except on ``serial``.
    ``chips_per_cell``: split each fault rate's chips into evaluate cells of that many chips, so that few
    fault rates still keep every worker busy (None: one cell per fault rate); the rows are the same.
    ``log`` gets one line per finished cell (None: silent); ``progress`` shows one bar for the sweep.
    A failing cell is logged with its key and traceback, the others go on, and `CellsFailedError`
    (naming them) is raised at the end, after the finished cells are saved.
    """
    if not isinstance(config, SweepConfig):
        raise ArgumentTypeError(f"sweep: config must be an rramfx.SweepConfig, got {type(config).__name__}")
    if chips_per_cell is not None:
        chips_per_cell = positive_count("chips_per_cell", chips_per_cell, 1)
    path = writable_folder("sweep out_dir", out_dir, SweepError)  # before any cell runs
    _check_folder(path, config)
    job = SweepJob(config, str(path), str(torch.device(device)), loaders, model_fn)
    runner = _Runner(job, log or (lambda _msg: None), cpus_per_cell, gpus_per_cell, chips_per_cell)
    own = not isinstance(engine, Engine)
    eng = make_engine(engine, workers=workers, threads=threads, address=address) if own else engine
    try:
        runner.run(eng, progress)
    finally:
        if own:
            eng.close()
    rows = _assemble(job)
    if runner.failed:
        raise CellsFailedError(f"{len(runner.failed)} cell(s) of the sweep failed: {', '.join(runner.failed)}; "
                               "their tracebacks were logged; re-run the sweep to retry only those", runner.failed)
    if rows:
        paths = write_report(path)
        runner.say(f"report: {', '.join(str(p) for p in paths.values())}")
    return _wanted(rows, config)


class _Runner:
    """Submits one sweep call's missing cells to an engine: train cells first, each trained model's
    evaluate cells as soon as it is saved, and keeps the keys of the cells that failed."""

    def __init__(self, job: SweepJob, say: Callable[[str], None], cpus: int, gpus: float, chips_per_cell: int | None):
        self.job, self.say, self.cpus, self.gpus = job, say, cpus, gpus
        self.failed: list[str] = []
        self.cells: dict[str, tuple[str, float, int, float]] = {}
        trials = job.config.trials
        step = chips_per_cell or trials
        self.blocks = [None] if step >= trials else [(a, min(step, trials - a)) for a in range(0, trials, step)]

    def submit(self, engine: Engine, kind: str, drop: float, seed: int, fault: float = 0.0,
               block: tuple[int, int] | None = None) -> None:
        if kind == "train":
            key, fn, args = f"train drop={drop:g} seed={seed}", train_stage, (self.job, drop, seed)
        else:
            key, fn = _evaluate_key(drop, seed, fault, block), evaluate_stage
            args = (self.job, drop, seed, fault, block)
        self.cells[key] = (kind, drop, seed, fault)
        engine.submit(Task(key, fn, args, cpus=self.cpus, gpus=self.gpus))

    def missing(self, drop: float, seed: int) -> list[tuple[float, tuple[int, int] | None]]:
        """The evaluate cells (fault rate, block of chips) of (``drop``, ``seed``) the folder lacks."""
        todo = []
        for f in self.job.config.fault_rates:
            if cell_path(self.job, drop, seed, f).is_file():
                continue
            done = block_paths(self.job, drop, seed, f)
            if done and merge_blocks([read_cell(p) for p in done], self.job.config.trials) is not None:
                continue  # finished in blocks of another size: `_assemble` puts them together
            todo += [(f, b) for b in self.blocks if b is None or not cell_path(self.job, drop, seed, f, b).is_file()]
        return todo

    def run(self, engine: Engine, progress: bool) -> None:
        c, total = self.job.config, 0
        for drop in c.drop_rates:
            for seed in c.seeds:
                todo = self.missing(drop, seed)
                if not model_path(self.job.out_dir, drop, seed).is_file():
                    self.submit(engine, "train", drop, seed)
                    total += 1 + len(todo)
                else:
                    for fault, block in todo:
                        self.submit(engine, "evaluate", drop, seed, fault, block)
                    total += len(todo)
        with tqdm(total=total, desc="sweep", unit="cell", disable=not progress or total == 0) as bar:
            for outcome in engine.completed():
                bar.update(1)
                self.finished(engine, outcome, bar)

    def finished(self, engine: Engine, outcome: Outcome, bar: tqdm) -> None:
        kind, drop, seed, _ = self.cells[outcome.key]
        if not outcome.ok:
            self.failed.append(outcome.key)
            self.say(f"FAILED {outcome.key}:\n{outcome.error}")
            if kind == "train":  # its evaluate cells cannot run
                todo = self.missing(drop, seed)
                self.failed += [_evaluate_key(drop, seed, f, b) for f, b in todo]
                bar.update(len(todo))
            return
        v = outcome.value
        if kind == "train":
            self.say(f"drop rate {drop:g}, seed {seed}: fault-free accuracy {100 * v['clean_accuracy']:.2f}% "
                     f"(trained in {v['train_seconds']:.0f} s)")
            for fault, block in self.missing(drop, seed):
                self.submit(engine, "evaluate", drop, seed, fault, block)
        else:
            chips = f"chips {v['first']}-{v['first'] + v['trials'] - 1}" if "first" in v else f"{v['trials']} chips"
            self.say(f"drop rate {drop:g}, seed {seed}, fault rate {v['fault_rate']:g}: "
                     f"{100 * v['accuracy']:.2f}% ± {100 * v['chip_std']:.2f} over {chips}")


def _evaluate_key(drop: float, seed: int, fault: float, block: tuple[int, int] | None) -> str:
    key = f"evaluate drop={drop:g} seed={seed} fault={fault:g}"
    return key if block is None else f"{key} chips={block[0]}-{block[0] + block[1] - 1}"


def _rows_key(row: Mapping[str, Any]) -> tuple[float, float, int]:
    return round(float(row["drop_rate"]), 6), round(float(row["fault_rate"]), 6), int(row["seed"])


def _assemble(job: SweepJob) -> list[dict[str, Any]]:
    """Every evaluate cell of the folder under the current evaluation settings, as rows in grid order,
    written to ``results.json`` with the configuration (its grid: everything the folder holds)."""
    folder = Path(job.out_dir) / "cells"
    tag = job.eval_tag()
    merge_block_files(job)
    rows = sorted((read_cell(p) for p in folder.glob(f"*_{tag}.json")), key=_rows_key) if folder.is_dir() else []
    merged = job.config.to_dict()
    for name, column in (("drop_rates", "drop_rate"), ("fault_rates", "fault_rate"), ("seeds", "seed")):
        merged[name] = sorted({r[column] for r in rows} | set(merged[name]))
    write_atomic(Path(job.out_dir) / RESULTS_FILE, json.dumps({"format": _FORMAT, "config": merged, "rows": rows},
                                                              indent=1) + "\n")
    return rows


def _wanted(rows: list[dict[str, Any]], config: SweepConfig) -> list[dict[str, Any]]:
    """The rows of ``config``'s grid."""
    c = config
    wanted = {(round(d, 6), round(f, 6), s) for d in c.drop_rates for f in c.fault_rates for s in c.seeds}
    return [r for r in rows if _rows_key(r) in wanted]


def _check_folder(path: Path, config: SweepConfig) -> None:
    """Create the folder, or check that what it holds was trained the way ``config`` trains: only the
    grid and the evaluation settings may differ."""
    results = path / RESULTS_FILE
    if results.is_file():
        try:
            stored = json.loads(results.read_text(encoding="utf-8")).get("config", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ResultsFileError(f"'{results}' is not an rramfx sweep record ({e}); delete it to start over") from e
        if not isinstance(stored, dict):
            raise ResultsFileError(f"'{results}': field 'config' must be an object, got {type(stored).__name__}; "
                                   "delete the file to start over")
        current = config.to_dict()
        defaults = SweepConfig().to_dict()  # a setting added since the folder was written had its default
        diffs = [f"{k}: {stored.get(k, defaults[k])!r} there, {current[k]!r} now" for k in current
                 if k not in GRID_FIELDS and k not in EVAL_FIELDS and stored.get(k, defaults[k]) != current[k]]
        if diffs:
            raise SweepError(
                f"'{results}' holds results of a different sweep ({'; '.join(diffs)}). Choose another output "
                "folder, or delete it to start over; only the grid (drop rates, fault rates, seeds) and the "
                "evaluation settings (trials, chip seed, SA0 share, recalibration) may change on resume."
            )
    (path / "models").mkdir(parents=True, exist_ok=True)
