"""Measuring a prepared model: accuracy, Monte-Carlo over simulated faulty chips, and BatchNorm
recalibration for a chip's drop rate."""

from rramfx.evaluation.chips import MonteCarloResult, check_chip_args, evaluate, monte_carlo
from rramfx.evaluation.on_chip import evaluate_on_chip
from rramfx.evaluation.parallel_chips import parallel_monte_carlo
from rramfx.evaluation.recalibrate import batchnorm_layers, recalibrate_bn

__all__ = [
    "MonteCarloResult",
    "batchnorm_layers",
    "check_chip_args",
    "evaluate",
    "evaluate_on_chip",
    "monte_carlo",
    "parallel_monte_carlo",
    "recalibrate_bn",
]
