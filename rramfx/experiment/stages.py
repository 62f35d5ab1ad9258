"""The two stages of a sweep as engine tasks: train one (drop rate, seed), evaluate one trained model at
one fault rate. Each is a top-level function of plain, picklable data (`SweepJob` and its key), so it
runs the same in this process, in a local worker or on a Ray node, and writes its own result file:

- a train cell writes ``models/drop<p>_seed<s>.pt`` (`TrainedCell.save`, atomic), whose record keeps
  the fault-free accuracy and the training seconds;
- an evaluate cell writes ``cells/drop<p>_seed<s>_fault<f>_<eval>.json``, a checked file
  (`rramfx.files`) holding its result row, where ``<eval>`` names the evaluation settings (chips,
  chip seed, SA0 share, recalibration): changing them evaluates anew and reuses the trained models;
- a fault rate's chips may be split into blocks, one evaluate cell each (``..._<eval>_chips<a>-<b>.json``,
  chips ``a`` .. ``b``); `merge_blocks` puts blocks that cover all chips together into the row the
  whole cell would have written, number for number (chip ``i`` is ``chip_seed(seed, i)`` in any block,
  and each block recalibrates from the same seeded batches).

Everything a cell computes comes from its key: its data loaders are built inside the cell, torch is
seeded from the key, and the engine runs it on a fixed number of threads, so its numbers do not depend
on the order cells run in, on which worker ran it, or on an interruption before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rramfx.errors import ResultsFileError, TrainError
from rramfx.experiment.cells import CellData, TrainKey, evaluate_cell, train_cell
from rramfx.experiment.config import SweepConfig
from rramfx.files import canonical_json, load_checked_json, save_checked_json, sha256_hex
from rramfx.models.recipe import ModelRecipe
from rramfx.statistics import chip_statistics
from rramfx.training.saved import load_prepared

__all__ = ["CELL_FORMAT", "EVAL_FIELDS", "SweepJob", "block_paths", "cell_path", "evaluate_stage", "merge_block_files",
           "merge_blocks", "model_path", "read_cell", "train_stage"]

#: The checked-file format of an evaluate cell's result.
CELL_FORMAT = "rramfx.SweepCell"
#: The settings that only change how trained models are evaluated (not how they are trained).
EVAL_FIELDS = ("trials", "chip_seed", "sa0_fraction", "recalibrate", "recal_batches")


@dataclass(frozen=True)
class SweepJob:
    """What every cell of one sweep call shares: the configuration, the output folder, the device and
    the caller's ``loaders``/``model_fn`` (None: from the configuration). Picklable when those are."""

    config: SweepConfig
    out_dir: str
    device: str = "cpu"
    loaders: tuple[Iterable[Any], Iterable[Any]] | None = None
    model_fn: Callable[[], nn.Module] | None = None

    def data(self) -> CellData:
        c = self.config
        return CellData(c.train_settings().data, self.device, num_classes=c.num_classes, in_chans=c.in_chans,
                        loaders=self.loaders)

    def eval_tag(self) -> str:
        """A short name of the evaluation settings, part of every evaluate cell's file name."""
        settings = {name: getattr(self.config, name) for name in EVAL_FIELDS}
        return sha256_hex(canonical_json(settings))[:10]


def model_path(out_dir: str | Path, drop: float, seed: int) -> Path:
    """Where the train cell of (``drop``, ``seed``) saves its model."""
    return Path(out_dir) / "models" / f"drop{drop:g}_seed{seed}.pt"


def cell_path(job: SweepJob, drop: float, seed: int, fault: float, block: tuple[int, int] | None = None) -> Path:
    """Where the evaluate cell of (``drop``, ``seed``, ``fault``) under ``job``'s settings writes its row;
    ``block`` = (first chip, chips): the file of that block of the cell's chips."""
    name = f"drop{drop:g}_seed{seed}_fault{fault:g}_{job.eval_tag()}"
    if block is not None:
        name += f"_chips{block[0]}-{block[0] + block[1] - 1}"
    return Path(job.out_dir) / "cells" / f"{name}.json"


def block_paths(job: SweepJob, drop: float, seed: int, fault: float) -> list[Path]:
    """The block files of one evaluate cell that the folder holds."""
    whole = cell_path(job, drop, seed, fault)
    return sorted(whole.parent.glob(f"{whole.stem}_chips*-*.json"))


def train_stage(job: SweepJob, drop: float, seed: int) -> dict[str, float]:
    """Train the model of (``drop``, ``seed``) and save it; returns its fault-free accuracy and training
    seconds. Resumes from the cell's checkpoint when an earlier run was interrupted."""
    data = job.data()
    recipe = ModelRecipe(job.config.model, data.num_classes, data.in_chans, job.config.width)
    path = model_path(job.out_dir, drop, seed)
    ckpt = path.with_suffix(".ckpt")
    trained = train_cell(TrainKey(recipe, drop, seed), job.config.train_settings(), data, device=job.device,
                         checkpoint=ckpt, model_fn=job.model_fn)
    if math.isnan(trained.clean_accuracy):
        raise TrainError(f"drop rate {drop:g}, seed {seed}: the trained model's accuracy is NaN")
    trained.save(path)
    ckpt.unlink(missing_ok=True)
    return {"clean_accuracy": trained.clean_accuracy, "train_seconds": trained.seconds}


def evaluate_stage(job: SweepJob, drop: float, seed: int, fault: float,
                   block: tuple[int, int] | None = None) -> dict[str, Any]:
    """Evaluate the saved model of (``drop``, ``seed``) on the sweep's chips at ``fault`` (recalibrated
    first when the configuration asks), write the result row to its cell file and return it.
    ``block`` = (first chip, chips): only those chips, into the block's own file."""
    custom = None
    if job.model_fn is not None:
        torch.manual_seed(seed)
        custom = job.model_fn()
    gm, record = load_prepared(model_path(job.out_dir, drop, seed), map_location=job.device, model=custom)
    data = job.data()
    start = time.perf_counter()
    first, trials = block if block is not None else (0, None)
    result = evaluate_cell(gm, fault, job.config.chips(), data.test_loader, first=first, trials=trials,
                           recalibration=job.config.recalibration(seed), recal_loader=data.recal_loader(seed),
                           channels_last=job.config.channels_last)
    info = record["info"]
    row = _row(drop, fault, seed, result.accuracies, result.samples, float(info["clean_accuracy"]),
               float(info.get("train_seconds", 0.0)), time.perf_counter() - start)
    if block is not None:
        row["first"] = first
    save_checked_json(cell_path(job, drop, seed, fault, block), CELL_FORMAT, 1, row)
    return row


def merge_blocks(rows: list[dict[str, Any]], trials: int) -> dict[str, Any] | None:
    """The whole cell's row from the rows of its blocks, when blocks starting at chip 0 follow each other
    up to chip ``trials - 1`` (None otherwise): accuracies in chip order, statistics over all of them,
    evaluation seconds summed."""
    starts: dict[int, list[dict[str, Any]]] = {}
    for r in rows:  # blocks of runs with other block sizes may overlap: any chain that covers will do
        starts.setdefault(int(r["first"]), []).append(r)
    chains: dict[int, list[dict[str, Any]]] = {trials: []}  # from chip i to the last, where one exists
    for at in sorted(starts, reverse=True):
        for r in starts[at]:
            end = at + int(r["trials"])
            if end in chains:
                chains[at] = [r, *chains[end]]
                break
    chain = chains.get(0)
    if not chain:
        return None
    head = chain[0]
    return _row(head["drop_rate"], head["fault_rate"], head["seed"], [a for r in chain for a in r["accuracies"]],
                head["samples"], head["clean_accuracy"], head["train_seconds"], sum(r["eval_seconds"] for r in chain))


def read_cell(path: Path) -> dict[str, Any]:
    """The result row of an evaluate cell's file (checked: a damaged file is a `ResultsFileError`)."""
    return load_checked_json(path, CELL_FORMAT, ResultsFileError)[1]


def merge_block_files(job: SweepJob) -> None:
    """Write the whole cell's file for every cell of ``job``'s evaluation settings whose block files
    cover all its chips, then remove those block files."""
    folder = Path(job.out_dir) / "cells"
    groups: dict[str, list[Path]] = {}
    for p in folder.glob(f"*_{job.eval_tag()}_chips*-*.json") if folder.is_dir() else ():
        groups.setdefault(p.stem.rsplit("_chips", 1)[0], []).append(p)
    for stem, paths in groups.items():
        row = merge_blocks([read_cell(p) for p in paths], job.config.trials)
        if row is not None:
            save_checked_json(folder / f"{stem}.json", CELL_FORMAT, 1, row)
            for p in paths:
                p.unlink()


def _row(drop: float, fault: float, seed: int, accuracies: Iterable[float], samples: int, clean: float,
         train_seconds: float, eval_seconds: float) -> dict[str, Any]:
    """One result row (the chip accuracies included), its statistics `rramfx.statistics.chip_statistics`
    of the accuracies, as `MonteCarloResult`'s."""
    accuracies = [float(a) for a in accuracies]
    stats = chip_statistics(accuracies)
    return {
        "drop_rate": drop, "fault_rate": fault, "seed": seed, "accuracy": stats.mean,
        "chip_std": stats.std, "chip_min": stats.min, "chip_max": stats.max,
        "ci95_low": stats.ci95[0], "ci95_high": stats.ci95[1], "clean_accuracy": clean,
        "trials": len(accuracies), "samples": samples, "train_seconds": train_seconds,
        "eval_seconds": eval_seconds, "accuracies": accuracies,
    }
