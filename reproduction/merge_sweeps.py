"""Merge sweep folders that differ only in their drop rates (run side by side) into one folder.

    python reproduction/merge_sweeps.py OUT IN1 IN2 ...

Rows, configurations' grids and trained models are combined; anything else in the configurations
must agree. The report (CSV, markdown, heatmap, best-drop-rate plot) is written for the merged folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rramfx.experiment.report import RESULTS_FILE, load_results, write_report

GRID = ("drop_rates", "fault_rates", "seeds")


def main(out: str, *inputs: str) -> int:
    data = [load_results(i) for i in inputs]
    base = dict(data[0]["config"])
    for d, name in zip(data[1:], inputs[1:], strict=True):
        diffs = [k for k in base if k not in GRID and d["config"].get(k) != base[k]]
        if diffs:
            raise SystemExit(f"{name} differs from {inputs[0]} in {', '.join(diffs)}: cannot merge")
    for key in GRID:
        base[key] = sorted({v for d in data for v in d["config"][key]})
    out_dir = Path(out)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    for i in inputs:
        for model in (Path(i) / "models").glob("*.pt"):
            shutil.copy2(model, out_dir / "models" / model.name)
    rows = [r for d in data for r in d["rows"]]
    merged = {"format": data[0]["format"], "config": base, "rows": rows, "merged_from": list(inputs)}
    (out_dir / RESULTS_FILE).write_text(json.dumps(merged, indent=1) + "\n")
    print(f"{len(rows)} rows from {len(inputs)} folders -> {out_dir}: "
          + ", ".join(str(p) for p in write_report(out_dir).values()))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to write the merged sweep into")
    ap.add_argument("inputs", nargs="+", help="sweep folders (each with a results.json) to merge")
    return ap.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    raise SystemExit(main(args.out, *args.inputs))
