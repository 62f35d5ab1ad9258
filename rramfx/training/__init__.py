"""Training a prepared model with DropConnect, and saving and loading prepared models."""

from rramfx.errors import TrainError
from rramfx.training.loop import SCHEDULES, TrainOptions, run_training, train
from rramfx.training.saved import load_prepared, save_prepared

__all__ = [
    "SCHEDULES",
    "TrainError",
    "TrainOptions",
    "load_prepared",
    "run_training",
    "save_prepared",
    "train",
]
