"""Training a prepared model with DropConnect, and saving and loading prepared models."""

from rramfx.training.loop import SCHEDULES, TrainError, load_prepared, save_prepared, train

__all__ = [
    "SCHEDULES",
    "TrainError",
    "load_prepared",
    "save_prepared",
    "train",
]
