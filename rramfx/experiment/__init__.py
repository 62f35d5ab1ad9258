"""The paper's experiment: a grid of trainings and Monte-Carlo evaluations, and its report."""

from rramfx.experiment.grid import SweepConfig, SweepError, sweep
from rramfx.experiment.report import write_report

__all__ = [
    "SweepConfig",
    "SweepError",
    "sweep",
    "write_report",
]
