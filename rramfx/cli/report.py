"""``rramfx report``: re-render the tables and plots of a sweep folder from its results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from rramfx.checks import writable_folder
from rramfx.experiment.report import RESULTS_FILE, write_report

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rramfx report`` to the subcommand parsers."""
    p = sub.add_parser(
        "report", help="re-render a sweep's tables and plots from its results.json",
        description="Read OUT/results.json (written by `rramfx sweep`) and write results.csv, summary.csv, "
                    "results.md, heatmap.png and best_drop_rate.png beside it; print the markdown table.",
    )
    p.add_argument("out", help="a sweep output folder (or its results.json)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Re-render a sweep folder's tables and plots and print the markdown table."""
    out = Path(args.out)
    folder = out.parent if out.is_file() and out.name == RESULTS_FILE else out
    if folder.is_dir():  # a missing folder is reported by write_report (no results.json)
        writable_folder("OUT", folder)  # the tables and plots are written beside results.json
    paths = write_report(folder)
    print(paths["markdown"].read_text(encoding="utf-8"))
    for name, path in paths.items():
        if name != "markdown":
            print(f"wrote {path}")
    return 0
