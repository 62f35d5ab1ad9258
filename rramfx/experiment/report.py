"""Tables and plots of a drop-rate × fault-rate sweep, rendered from its ``results.json``.

`write_report(out_dir)` writes, beside ``results.json``:

- ``results.csv``: one row per (drop rate, fault rate, training seed), chip statistics included;
- ``summary.csv`` and ``results.md``: per (drop rate, fault rate) the accuracy averaged over training
  seeds (each seed's accuracy is itself the mean over simulated chips), its spread over seeds and the
  mean chip-to-chip spread;
- ``heatmap.png``: accuracy over drop rate × fault rate (the VTS 2024 paper's Figs. 3–5);
- ``best_drop_rate.png``: the best drop rate for each fault rate (Fig. 6) beside accuracy against fault
  rate for every drop rate.

The plots are those of `rramfx.experiment.plots` (spread shown and named, fixed 0–100% scale, ties
marked), drawn with matplotlib's object API on an Agg canvas, so no global backend is changed.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rramfx.errors import ReportError, ResultsFileError
from rramfx.experiment.plots import clear_best, plot_heatmap, plot_sweep
from rramfx.tables import table_lines

RESULTS_FILE = "results.json"
ROW_COLUMNS = ("drop_rate", "fault_rate", "seed", "accuracy", "chip_std", "chip_min", "chip_max", "ci95_low",
               "ci95_high", "clean_accuracy", "trials", "samples", "train_seconds", "eval_seconds")
SUMMARY_COLUMNS = ("drop_rate", "fault_rate", "accuracy", "seed_std", "chip_std", "seeds", "clean_accuracy")


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """The ``{"config": ..., "rows": [...]}`` record of a sweep folder, its rows checked (`check_rows`):
    a record that is not an object, a row with a missing or non-numeric field, or a (drop rate, fault
    rate, seed) listed twice is a `ResultsFileError` naming the file, the row and the field."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise ResultsFileError(f"no {RESULTS_FILE} in '{out_dir}': run `rramfx sweep --out {out_dir}` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsFileError(f"'{path}' is not valid JSON ({e}); delete it to recompute the sweep") from e
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ResultsFileError(f"'{path}' is not an rramfx sweep record (no 'rows' list)")
    if not isinstance(data.get("config", {}), dict):
        raise ResultsFileError(f"'{path}': field 'config' must be an object, got {type(data['config']).__name__}")
    check_rows(data["rows"], path)
    return data


#: The fields every result row needs, and the range of each (the row's key is drop rate, fault rate, seed).
_ROW_FIELDS = {"drop_rate": (0.0, 1.0), "fault_rate": (0.0, 1.0), "seed": (0, math.inf), "accuracy": (0.0, 1.0)}
#: Fields a row may hold that `summarize` averages: numbers when present.
_OPTIONAL_NUMBERS = ("chip_std", "clean_accuracy")


def check_rows(rows: list[Any], path: str | Path) -> None:
    """Refuse result rows that would be averaged wrongly: a row that is not an object, a field of
    ``_ROW_FIELDS`` missing, not a finite number or out of range (a seed must be an integer), an optional
    number that is not one, or the same (drop rate, fault rate, seed) twice. A duplicated row is refused
    rather than dropped, even when identical: `rramfx.sweep` writes each key once, so a repeat means the file
    was edited or merged by hand, and averaging it in would count one training seed twice."""
    seen: dict[tuple[float, float, int], int] = {}
    for i, row in enumerate(rows):
        where = f"'{path}' row {i}"
        if not isinstance(row, dict):
            raise ResultsFileError(f"{where} must be an object with {', '.join(_ROW_FIELDS)}, got {row!r:.60}")
        for name, (low, high) in _ROW_FIELDS.items():
            value = row.get(name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or not low <= value <= high or (name == "seed" and not isinstance(value, int)):
                kind = "an integer >= 0" if name == "seed" else f"a number in [{low:g}, {high:g}]"
                raise ResultsFileError(f"{where}: field '{name}' must be {kind}, got {value!r:.60}; "
                                       "delete the file to rebuild it from the sweep's cells")
        for name in _OPTIONAL_NUMBERS:
            if name in row and (isinstance(row[name], bool) or not isinstance(row[name], (int, float))):
                raise ResultsFileError(f"{where}: field '{name}' must be a number, got {row[name]!r:.60}")
        key = (round(float(row["drop_rate"]), 6), round(float(row["fault_rate"]), 6), row["seed"])
        if key in seen:
            raise ResultsFileError(f"{where} repeats row {seen[key]} (drop_rate {key[0]:g}, fault_rate {key[1]:g}, "
                                   f"seed {key[2]}): one training seed would count twice; remove the duplicate")
        seen[key] = i


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per (drop rate, fault rate): mean accuracy over training seeds, the standard deviation
    over seeds (NaN with one seed), the mean chip-to-chip standard deviation and the mean fault-free
    accuracy; sorted by drop rate, then fault rate."""
    cells: dict[tuple[float, float], list[Mapping[str, Any]]] = {}
    for r in rows:
        cells.setdefault((float(r["drop_rate"]), float(r["fault_rate"])), []).append(r)
    out = []
    for (d, f), rs in sorted(cells.items()):
        acc = [float(r["accuracy"]) for r in rs]
        out.append({
            "drop_rate": d, "fault_rate": f, "accuracy": statistics.fmean(acc),
            "seed_std": statistics.stdev(acc) if len(acc) > 1 else math.nan,
            "chip_std": statistics.fmean(float(r.get("chip_std", 0.0)) for r in rs),
            "seeds": len(rs),
            "clean_accuracy": statistics.fmean(float(r.get("clean_accuracy", math.nan)) for r in rs),
        })
    return out


def _grid(summary: list[dict[str, Any]]) -> tuple[list[float], list[float], dict[tuple[float, float], dict]]:
    drops = sorted({s["drop_rate"] for s in summary})
    faults = sorted({s["fault_rate"] for s in summary})
    return drops, faults, {(s["drop_rate"], s["fault_rate"]): s for s in summary}


def best_drop_rates(summary: list[dict[str, Any]]) -> dict[float, float]:
    """Fault rate → the drop rate with the highest mean accuracy (the lower one on a tie)."""
    best: dict[float, tuple[float, float]] = {}
    for s in summary:
        f, key = s["fault_rate"], (s["accuracy"], -s["drop_rate"])
        if f not in best or key > best[f]:
            best[f] = key
    return {f: -key[1] for f, key in sorted(best.items())}


def markdown_table(summary: list[dict[str, Any]], title: str = "") -> str:
    """Accuracy (%) with drop rates as rows and fault rates as columns; ± is the spread over training
    seeds when there are several, else the chip-to-chip spread. The best drop rate per column is bold
    where it beats the runner-up by more than their combined spread (`rramfx.experiment.plots.clear_best`);
    a column with no bold cell is a tie."""
    drops, faults, cells = _grid(summary)
    best = clear_best(summary)
    seeds = max((s["seeds"] for s in summary), default=1)
    spread = "std over training seeds" if seeds > 1 else "std over chips"
    rows = [[f"p = {d:g}", *(_cell_text(cells.get((d, f)), seeds, best.get(f) == d) for f in faults)]
            for d in drops]
    lines = [f"### {title}", ""] if title else []
    lines += table_lines(["drop rate \\ fault rate", *(f"{100 * f:g}%" for f in faults)], rows,
                         "<" + ">" * len(faults), markdown=True, pad=False)
    lines += ["", f"Accuracy in % (mean over simulated chips, averaged over {seeds} training seed"
              f"{'s' if seeds > 1 else ''}); ± is the {spread}. Bold: best drop rate for that fault rate, where it "
              "beats the runner-up by more than their combined spread (none bold: a tie)."]
    chip = [s["chip_std"] for s in summary if s["fault_rate"] > 0]
    if chip and seeds > 1:
        lines.append(f"Mean chip-to-chip std: {100 * statistics.fmean(chip):.2f} points.")
    return "\n".join(lines) + "\n"


def _cell_text(s: Mapping[str, Any] | None, seeds: int, best: bool) -> str:
    """One cell of `markdown_table`: accuracy ± spread in %, bold for the best drop rate, – when missing."""
    if s is None:
        return "–"
    err = s["seed_std"] if seeds > 1 else s["chip_std"]
    text = f"{100 * s['accuracy']:.2f}" + ("" if math.isnan(err) else f" ± {100 * err:.2f}")
    return f"**{text}**" if best else text


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path, columns: Iterable[str]) -> Path:
    """Write ``rows`` with the given ``columns`` (missing values left empty)."""
    path = Path(path)
    columns = list(columns)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def describe(config: Mapping[str, Any]) -> str:
    """A one-line title for a sweep's plots and tables."""
    seeds = config.get("seeds") or [0]
    parts = [str(config.get("model", "model")), "on", str(config.get("dataset", "data"))]
    epochs, trials = config.get("epochs", "?"), config.get("trials", "?")
    extra = [f"{epochs} epoch{'' if epochs == 1 else 's'}", f"{trials} chip{'' if trials == 1 else 's'}",
             f"{len(seeds)} training seed{'s' if len(seeds) > 1 else ''}"]
    if config.get("width", 1.0) != 1.0:
        extra.append(f"width {config['width']:g}")
    if config.get("rram_1x1"):
        extra.append("1x1 on RRAM")
    return " ".join(parts) + " (" + ", ".join(extra) + ")"


def write_report(out_dir: str | Path) -> dict[str, Path]:
    """Render every table and plot of a sweep folder from its ``results.json``; returns name → path."""
    out_dir = Path(out_dir)
    data = load_results(out_dir)
    rows = data["rows"]
    if not rows:
        raise ReportError(f"'{out_dir / RESULTS_FILE}' has no results yet")
    summary = summarize(rows)
    config = data.get("config", {})
    title = describe(config)
    paths = {
        "csv": write_csv(sorted(rows, key=lambda r: (r["drop_rate"], r["fault_rate"], r["seed"])),
                         out_dir / "results.csv", ROW_COLUMNS),
        "summary_csv": write_csv(summary, out_dir / "summary.csv", SUMMARY_COLUMNS),
        "markdown": out_dir / "results.md",
        "heatmap": out_dir / "heatmap.png",
        "best_drop_rate": out_dir / "best_drop_rate.png",
    }
    paths["markdown"].write_text(markdown_table(summary, title))
    faults = {"sa0_fraction": float(config.get("sa0_fraction", 0.0) or 0.0)}
    plot_heatmap(summary, title=title, **faults).savefig(paths["heatmap"])
    plot_sweep(summary, title=title, chance=chance_level(config), **faults).savefig(paths["best_drop_rate"])
    return paths


#: Classes of the named datasets, for the chance level of a sweep that did not set ``num_classes``.
_DATASET_CLASSES = {"fashion-mnist": 10, "mnist": 10, "cifar10": 10, "synthetic": 4}


def chance_level(config: Mapping[str, Any]) -> float | None:
    """1 / classes of a sweep (its ``num_classes``, else its named dataset's), None when unknown."""
    classes = config.get("num_classes") or _DATASET_CLASSES.get(str(config.get("dataset", "")).lower())
    return 1.0 / classes if classes else None


__all__ = [
    "ReportError",
    "best_drop_rates",
    "chance_level",
    "check_rows",
    "load_results",
    "markdown_table",
    "summarize",
    "write_csv",
    "write_report",
]
