"""Plots of a drop-rate × fault-rate sweep that a reader can trust, from `rramfx.experiment.report.summarize`.

Every plot shows its spread and says what it is (std over simulated chips with one training seed, std
over training seeds with several, the mean chip std as a band beside it); accuracy is in % on a fixed
0–100 scale (a colour scale a reader can compare across figures) with the chance level drawn; fault
rates are in % of cells and the labels say which faults (SA1, SA0 or both). A "best" drop rate is
marked only where it beats the runner-up by more than their combined spread, otherwise the cell
says *tie*.

Each function takes an optional matplotlib ``ax`` (a new figure on an Agg canvas when None, so no
global backend is changed) and returns the `matplotlib.figure.Figure`, to restyle or save.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["cell_spread", "clear_best", "fault_label", "plot_accuracy", "plot_best_drop_rate", "plot_heatmap",
           "plot_sweep", "spread_label"]

Summary = Sequence[Mapping[str, Any]]


def _grid(summary: Summary) -> tuple[list[float], list[float], dict[tuple[float, float], Mapping[str, Any]]]:
    drops = sorted({s["drop_rate"] for s in summary})
    faults = sorted({s["fault_rate"] for s in summary})
    return drops, faults, {(s["drop_rate"], s["fault_rate"]): s for s in summary}


def _seeds(summary: Summary) -> int:
    return max((int(s.get("seeds", 1)) for s in summary), default=1)


def cell_spread(s: Mapping[str, Any], seeds: int) -> float:
    """The spread shown for one cell: std over training seeds with several, else std over chips."""
    value = s.get("seed_std", math.nan) if seeds > 1 else s.get("chip_std", math.nan)
    return 0.0 if value is None or math.isnan(value) else float(value)


def spread_label(seeds: int) -> str:
    """What the ± and the error bars are, in words."""
    return f"± std over {seeds} training seeds" if seeds > 1 else "± std over simulated chips (1 training seed)"


def fault_label(sa0_fraction: float = 0.0) -> str:
    """Which faults a fault rate counts: ``SA1``, ``SA0`` or ``SA1+SA0 (x% SA0)``."""
    if sa0_fraction <= 0:
        return "SA1"
    if sa0_fraction >= 1:
        return "SA0"
    return f"SA1+SA0, {100 * sa0_fraction:g}% SA0"


def clear_best(summary: Summary) -> dict[float, float | None]:
    """Fault rate → the drop rate with the highest accuracy where it beats the runner-up by more than
    their combined spread (sqrt of the sum of squares of `cell_spread`), else None (a tie)."""
    drops, faults, cells = _grid(summary)
    seeds = _seeds(summary)
    out: dict[float, float | None] = {}
    for f in faults:
        ranked = sorted((cells[(d, f)] for d in drops if (d, f) in cells),
                        key=lambda s: (-s["accuracy"], s["drop_rate"]))
        if len(ranked) == 1:
            out[f] = ranked[0]["drop_rate"]
            continue
        first, second = ranked[0], ranked[1]
        margin = math.hypot(cell_spread(first, seeds), cell_spread(second, seeds))
        out[f] = first["drop_rate"] if first["accuracy"] - second["accuracy"] > margin else None
    return out


def _axes(ax: Any, width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, (fig.subplots(1, columns) if columns > 1 else fig.add_subplot())


def plot_heatmap(summary: Summary, ax: Any = None, *, title: str = "", sa0_fraction: float = 0.0,
                 vmin: float = 0.0, vmax: float = 100.0) -> Any:
    """Accuracy (%) over fault rate (across) × drop rate (down): each cell its mean ± spread, the clear
    best drop rate per fault rate in bold and boxed, ``tie`` under a column without one; colours on the
    fixed scale ``vmin``..``vmax`` (%). Returns the Figure."""
    import numpy as np
    from matplotlib.patches import Rectangle

    drops, faults, cells = _grid(summary)
    seeds = _seeds(summary)
    grid = np.full((len(drops), len(faults)), np.nan)
    for (d, f), s in cells.items():
        grid[drops.index(d), faults.index(f)] = 100 * s["accuracy"]
    fig, ax = _axes(ax, 1.8 + 1.2 * len(faults), 1.4 + 0.6 * len(drops))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="upper", vmin=vmin, vmax=vmax)
    best = clear_best(summary)
    mid = (vmin + vmax) / 2
    for (d, f), s in cells.items():
        i, j = drops.index(d), faults.index(f)
        mark = best.get(f) == d
        ax.text(j, i, f"{grid[i, j]:.1f}\n±{100 * cell_spread(s, seeds):.1f}", ha="center", va="center",
                fontsize=8, color="black" if grid[i, j] > mid else "white", fontweight="bold" if mark else "normal")
        if mark:
            ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, lw=2, ec="white"))
    ticks = [f"{100 * f:g}%" + ("\n(tie)" if best.get(f) is None else "") for f in faults]
    ax.set_xticks(range(len(faults)), ticks)
    ax.set_yticks(range(len(drops)), [f"{100 * d:g}%" for d in drops])
    ax.set_xlabel(f"fault rate (% of cells, {fault_label(sa0_fraction)})")
    ax.set_ylabel("DropConnect rate in training (%)")
    ax.set_title(f"{title or 'accuracy (%) on simulated chips'}\ncells: mean {spread_label(seeds)}", fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    return fig


def plot_accuracy(summary: Summary, ax: Any = None, *, title: str = "", sa0_fraction: float = 0.0,
                  chance: float | None = None) -> Any:
    """Accuracy (%) against fault rate (%), one line per drop rate, with error bars (`spread_label`
    says what they are, in the legend), the mean chip std as a band when there are several training
    seeds, and the chance level ``chance`` (a fraction, e.g. 1/10) as a dashed line. Returns the Figure."""
    drops, faults, cells = _grid(summary)
    seeds = _seeds(summary)
    fig, ax = _axes(ax, 6, 4)
    for k, d in enumerate(drops):
        pts = [cells[(d, f)] for f in faults if (d, f) in cells]
        xs = [100 * s["fault_rate"] for s in pts]
        ys = [100 * s["accuracy"] for s in pts]
        colour = f"C{k % 10}"
        ax.errorbar(xs, ys, yerr=[100 * cell_spread(s, seeds) for s in pts], fmt="o-", capsize=3, color=colour,
                    label=f"p = {100 * d:g}%")
        if seeds > 1:
            chip = [100 * float(s.get("chip_std", 0.0)) for s in pts]
            ax.fill_between(xs, [y - c for y, c in zip(ys, chip, strict=True)],
                            [y + c for y, c in zip(ys, chip, strict=True)], color=colour, alpha=0.12, lw=0)
    if chance is not None:
        ax.axhline(100 * chance, ls="--", color="grey", lw=1, label=f"chance ({100 * chance:.3g}%)")
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"fault rate (% of cells, {fault_label(sa0_fraction)})")
    ax.set_ylabel("accuracy (%)")
    note = spread_label(seeds).replace("± ", "error bars: ")
    if seeds > 1:
        note += "; band: mean std over chips"
    ax.legend(fontsize=7, title=f"drop rate ({note})", title_fontsize=7)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_best_drop_rate(summary: Summary, ax: Any = None, *, title: str = "", sa0_fraction: float = 0.0) -> Any:
    """The clear best drop rate (%) per fault rate (%), hollow where the best is a tie with the
    runner-up (`clear_best`), beside the line drop rate = fault rate. Returns the Figure."""
    drops, faults, cells = _grid(summary)
    best = clear_best(summary)
    top = {f: max((s for (d, g), s in cells.items() if g == f), key=lambda s: (s["accuracy"], -s["drop_rate"]))
           for f in faults}
    fig, ax = _axes(ax, 5, 4)
    clear = [f for f in faults if best.get(f) is not None]
    tied = [f for f in faults if best.get(f) is None]
    ax.plot([100 * f for f in faults], [100 * top[f]["drop_rate"] for f in faults], "-", color="C3", lw=1)
    ax.plot([100 * f for f in clear], [100 * best[f] for f in clear], "o", color="C3", label="best drop rate")
    if tied:
        ax.plot([100 * f for f in tied], [100 * top[f]["drop_rate"] for f in tied], "o", mfc="none", color="C3",
                label="highest, but within the spread (tie)")
    edge = 100 * max([*faults, *drops, 0.05])
    ax.plot([0, edge], [0, edge], "--", color="grey", lw=1, label="drop rate = fault rate")
    ax.set_xlabel(f"fault rate (% of cells, {fault_label(sa0_fraction)})")
    ax.set_ylabel("DropConnect rate in training (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_sweep(summary: Summary, *, title: str = "", sa0_fraction: float = 0.0, chance: float | None = None) -> Any:
    """`plot_best_drop_rate` (left) beside `plot_accuracy` (right) in one new Figure (a sweep's
    ``best_drop_rate.png``)."""
    fig, (left, right) = _axes(None, 11, 4.2, columns=2)
    plot_best_drop_rate(summary, left, sa0_fraction=sa0_fraction)
    plot_accuracy(summary, right, sa0_fraction=sa0_fraction, chance=chance)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
