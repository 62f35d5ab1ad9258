"""The paper's experiment: a grid of trainings and Monte-Carlo evaluations, its cells, and its report."""

from rramfx.errors import SweepError
from rramfx.experiment.cells import (
    CellData,
    Chips,
    DataSpec,
    Recalibration,
    TrainedCell,
    TrainKey,
    TrainSettings,
    evaluate_cell,
    train_cell,
)
from rramfx.experiment.config import SweepConfig
from rramfx.experiment.grid import sweep
from rramfx.experiment.report import write_report

__all__ = [
    "CellData",
    "Chips",
    "DataSpec",
    "Recalibration",
    "SweepConfig",
    "SweepError",
    "TrainKey",
    "TrainSettings",
    "TrainedCell",
    "evaluate_cell",
    "sweep",
    "train_cell",
    "write_report",
]
