"""Collect the reproduction's result folders into the markdown tables of docs/REPRODUCTION.md.

    python reproduction/collect.py [--results reproduction/results] > reproduction/results/tables.md

Reads every ``<name>/results.json`` that `rramfx sweep` (and ``ablation.py``) wrote; a missing folder
gives a line saying so instead of a table. Accuracies are the mean over the simulated chips of one
training seed; ``±`` is the standard deviation between chips.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

FAULTS = (0.0, 0.1, 0.2, 0.3)


def load(results: Path, name: str) -> list[dict[str, Any]] | None:
    path = results / name / "results.json"
    return json.loads(path.read_text())["rows"] if path.is_file() else None


def cell(rows: list[dict[str, Any]], drop: float, fault: float) -> dict[str, Any] | None:
    return next((r for r in rows if abs(r["drop_rate"] - drop) < 1e-9 and abs(r["fault_rate"] - fault) < 1e-9), None)


def fmt(r: dict[str, Any] | None, std: bool = True) -> str:
    if r is None:
        return "–"
    return f"{100 * r['accuracy']:.1f} ± {100 * r['chip_std']:.1f}" if std else f"{100 * r['accuracy']:.1f}"


def missing(name: str) -> str:
    return f"_{name}: not run yet._\n"


def c1(results: Path) -> str:
    out = ["### C1/C2: DropConnect vs plain training\n"]
    for model in ("resnet20", "vgg13", "mobilenetv2"):
        rows = load(results, f"c1_{model}")
        if rows is None:
            out.append(missing(f"c1_{model}"))
            continue
        drops = sorted({r["drop_rate"] for r in rows})
        out.append(f"**{model}** (accuracy %, mean ± chip std over {rows[0]['trials']} chips, "
                   f"{rows[0]['samples']} test images)\n")
        out.append("| drop rate | " + " | ".join(f"{100 * f:g}% SA1" for f in FAULTS) + " | loss at 10% |")
        out.append("|---|" + "---:|" * (len(FAULTS) + 1))
        for d in drops:
            c0, c10 = cell(rows, d, 0.0), cell(rows, d, 0.1)
            loss = f"{100 * (c0['accuracy'] - c10['accuracy']):.1f}" if c0 and c10 else "–"
            out.append(f"| {d:g} | " + " | ".join(fmt(cell(rows, d, f)) for f in FAULTS) + f" | {loss} |")
        out.append("")
    return "\n".join(out)


def c1_seeds(results: Path) -> str:
    """ResNet-20's C1 over training seeds: seed 0 from c1_resnet20, more from c1_resnet20_seed<n>."""
    runs = {0: load(results, "c1_resnet20")}
    for path in sorted(results.glob("c1_resnet20_seed*/results.json")):
        runs[int(path.parent.name.removeprefix("c1_resnet20_seed"))] = json.loads(path.read_text())["rows"]
    runs = {s: rows for s, rows in runs.items() if rows}
    if len(runs) < 2:
        return missing("c1_resnet20_seed1/2")
    drops = sorted(set.intersection(*({r["drop_rate"] for r in rows} for rows in runs.values())))
    out = [f"**resnet20 over {len(runs)} training seeds** ({', '.join(map(str, sorted(runs)))}): mean of the "
           "per-seed chip means ± std between seeds\n",
           "| drop rate | " + " | ".join(f"{100 * f:g}% SA1" for f in FAULTS) + " |", "|---|" + "---:|" * len(FAULTS)]
    for d in drops:
        cells = []
        for f in FAULTS:
            accs = [c["accuracy"] for rows in runs.values() if (c := cell(rows, d, f)) is not None]
            cells.append(f"{100 * statistics.fmean(accs):.1f} ± {100 * statistics.stdev(accs):.1f}"
                         if len(accs) > 1 else "–")
        out.append(f"| {d:g} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def c3(results: Path) -> str:
    rows = load(results, "c1_resnet20")
    if rows is None:
        return missing("c1_resnet20")
    out = ["### C3: best drop rate per fault rate (ResNet-20)\n", "| SA1 fault rate | best drop rate | accuracy | "
           "plain (p = 0) |", "|---:|---:|---:|---:|"]
    for f in FAULTS:
        cands = [r for r in rows if abs(r["fault_rate"] - f) < 1e-9]
        if not cands:
            continue
        best = max(cands, key=lambda r: r["accuracy"])
        out.append(f"| {100 * f:g}% | {best['drop_rate']:g} | {fmt(best)} | {fmt(cell(rows, 0.0, f))} |")
    return "\n".join(out) + "\n"


def compare(results: Path, title: str, base: str, other: str, labels: tuple[str, str]) -> str:
    a, b = load(results, base), load(results, other)
    if a is None or b is None:
        return missing(other if b is None else base)
    drops = sorted({r["drop_rate"] for r in b})
    out = [f"### {title}\n", "| drop rate | placement | " + " | ".join(f"{100 * f:g}% SA1" for f in FAULTS) + " |",
           "|---|---|" + "---:|" * len(FAULTS)]
    for d in drops:
        for label, rows in zip(labels, (a, b), strict=True):
            out.append(f"| {d:g} | {label} | " + " | ".join(fmt(cell(rows, d, f)) for f in FAULTS) + " |")
    return "\n".join(out) + "\n"


def c5(results: Path) -> str:
    """Widened ResNet-20 at drop rate 0.2 on 200 test images; 1x is the C1 model on the same images and
    chips (the ablation's scale+recal rows, which are what the sweep computes, and ablation_p0 for 0%)."""
    out = ["### C5: widened ResNet-20, drop rate 0.2 (200 test images)\n",
           "| width | " + " | ".join(f"{100 * f:g}% SA1" for f in FAULTS) + " | train s |",
           "|---|" + "---:|" * (len(FAULTS) + 1)]
    path = results / "ablation" / "results.json"
    if path.is_file():
        data = json.loads(path.read_text())
        rows = [dict(r, drop_rate=0.2) for r in data["rows"] if r["variant"] == "scale+recal"]
        p0 = results / "ablation_p0" / "results.json"  # the same model recalibrated for p' = 0, as the sweep does
        if p0.is_file():
            rows += [dict(r, drop_rate=0.2) for r in json.loads(p0.read_text())["rows"]]
        out.append("| 1x | " + " | ".join(fmt(cell(rows, 0.2, f)) for f in FAULTS) + " | – |")
    for w in (1.2, 1.4, 1.6):
        rows = load(results, f"c5_resnet20_width{w}")
        if rows is None:
            out.append(f"| {w:g}x | not run yet |")
            continue
        secs = next((r["train_seconds"] for r in rows if r["train_seconds"]), 0)
        out.append(f"| {w:g}x | " + " | ".join(fmt(cell(rows, 0.2, f)) for f in FAULTS) + f" | {secs:.0f} |")
    return "\n".join(out) + "\n"


def followup(results: Path) -> str:
    out = ["### Follow-up 1: mini-mobilenets, drop rate = fault rate (whole bottlenecks on RRAM)\n",
           "| bottlenecks | " + " | ".join(f"p = {p:g}: fault-free / faulty" for p in (0.1, 0.2, 0.3)) + " |",
           "|---:|" + "---:|" * 3]
    for n in range(2, 8):
        cells = []
        for p in (0.1, 0.2, 0.3):
            rows = load(results, f"followup_mini_mobilenet_{n}_p{p:g}")
            if rows is None:
                cells.append("–")
                continue
            cells.append(f"{fmt(cell(rows, p, 0.0), std=False)} / {fmt(cell(rows, p, p))}")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", "### Follow-up 2: six ResNet-20 convolutions on RRAM, plain 3x3 vs linear bottleneck\n",
            "| drop = fault rate | six convs: fault-free / faulty | six bottlenecks: fault-free / faulty |",
            "|---:|---:|---:|"]
    for p in (0.2, 0.3):
        cells = []
        for kind in ("convs", "bottlenecks"):
            rows = load(results, f"followup_resnet20_six_{kind}_p{p:g}")
            cells.append("–" if rows is None else f"{fmt(cell(rows, p, 0.0), std=False)} / {fmt(cell(rows, p, p))}")
        out.append(f"| {p:g} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def ablation(results: Path) -> str:
    path = results / "ablation" / "results.md"
    return "### Inference scale and BN recalibration (ResNet-20, drop rate 0.2)\n\n" + (
        path.read_text() if path.is_file() else missing("ablation"))


def wall_times(results: Path) -> str:
    out = ["### Wall times\n", "| experiment | wall time |", "|---|---:|"]
    for path in sorted(results.glob("*/wall_time.txt")):
        text = path.read_text().strip()
        wall = text.split(",")[0] if text[:1].isdigit() else "failed attempt (see its wall_time.txt)"
        out.append(f"| {path.parent.name} | {wall} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    results = Path(ap.parse_args().results)
    parts = [c1(results), c1_seeds(results), c3(results),
             compare(results, "C4: 1x1 shortcuts on the host vs on RRAM (ResNet-20)", "c1_resnet20",
                     "c4_resnet20_rram_1x1", ("1x1 on host", "1x1 on RRAM")),
             c5(results),
             compare(results, "C6: shortcuts as fault-free 1x1 on the host vs padded to 3x3 on RRAM (ResNet-20)",
                     "c1_resnet20", "c6_resnet20_padded_shortcuts", ("1x1 on host", "3x3 on RRAM")),
             followup(results), ablation(results), wall_times(results)]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
