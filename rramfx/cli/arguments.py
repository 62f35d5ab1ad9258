"""Arguments shared by the experiment subcommands (train, evaluate, sweep): data, device, rate lists."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import torch

from rramfx.data.registry import DATASETS
from rramfx.engines import ENGINES
from rramfx.errors import ArgumentError
from rramfx.training.fastpath import PRECISIONS

__all__ = ["MIN_IMAGE_SIZE", "add_data_args", "add_device_arg", "add_engine_args", "add_speed_args", "count",
           "dataset_name", "engine_options", "fraction", "image_shape", "image_size", "int_list", "non_negative_float",
           "non_negative_int", "positive_float", "rate", "rate_list", "resolve_device"]

#: The smallest ``--image-size``/input side rramfx accepts: a 3x3 convolution and a few stride-2 stages
#: need a few pixels (MNIST is 28, CIFAR 32); 2x2 images were accepted and trained on noise.
MIN_IMAGE_SIZE = 8

#: The ``--dataset`` help: the names rramfx reads, and the user's own images.
DATASET_HELP = (f"{', '.join(DATASETS)}, or imagefolder:ROOT for your own images (ROOT/train/<class>/... and "
                "ROOT/val/<class>/... or ROOT/test/<class>/..., torchvision's ImageFolder layout)")


def dataset_name(text: str) -> str:
    """``--dataset``: one of `DATASETS` or ``imagefolder:ROOT``; argparse reports anything else."""
    key = text.lower().replace("_", "-")
    known = {"fashion-mnist", "fashionmnist", "fmnist", "mnist", "cifar10", "cifar-10", "synthetic"}
    if key in known or (key.startswith("imagefolder:") and len(text) > len("imagefolder:")):
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}: choose {DATASET_HELP}")


# Parse-time flag types: each raises argparse.ArgumentTypeError, which argparse reports as one usage
# error naming the flag ("argument --trials: ...", exit code 2) before any work starts.

def _number(text: str, cast: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    """``text`` cast and checked (NaN and infinities refused), else an argparse error saying ``what``."""
    try:
        value = cast(text.strip())
    except ValueError:
        value = None
    if value is None or not ok(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def count(text: str) -> int:
    """An int >= 1: epochs, trials, batch sizes, subsets, workers, class and channel counts."""
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """An int >= 0: seeds, and counts where 0 means all."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0: learning rate, width."""
    return _number(text, float, lambda v: v > 0, "a number > 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0: weight decay, GPUs per cell."""
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def rate(text: str) -> float:
    """A rate in [0, 1): drop rate, fault rate, SA1/SA0 rate."""
    return _number(text, float, lambda v: 0 <= v < 1, "a rate in [0, 1) such as 0.1")


def fraction(text: str) -> float:
    """A share in [0, 1]: the SA0 fraction of faulty cells."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a fraction in [0, 1] such as 0.5")


def image_size(text: str) -> int:
    """An image side length >= `MIN_IMAGE_SIZE`."""
    return _number(text, int, lambda v: v >= MIN_IMAGE_SIZE, f"an integer >= {MIN_IMAGE_SIZE} (pixels per side)")


def image_shape(text: str) -> tuple[int, int, int]:
    """``"3,32,32"`` → ``(3, 32, 32)``: one input's channels >= 1, height and width >= `MIN_IMAGE_SIZE`."""
    parts = text.split(",")
    try:
        shape = tuple(_number(v, int, lambda v: True, "integers") for v in parts) if len(parts) == 3 else ()
    except argparse.ArgumentTypeError:
        shape = ()
    if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be C,H,W (three integers, C >= 1, H and W >= {MIN_IMAGE_SIZE}) "
                                         f"such as 3,32,32, got {text!r}")
    return shape  # type: ignore[return-value]


def rate_list(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.2"`` → ``(0.0, 0.1, 0.2)``, each in [0, 1); argparse reports a bad list as a usage error."""
    return _comma_list(text, rate, "rates in [0, 1) such as 0,0.1,0.2")


def int_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → ``(0, 1, 2)``, each >= 0 (seeds)."""
    return _comma_list(text, non_negative_int, "integers >= 0 such as 0,1,2")


def _comma_list(text: str, parse: Callable[[str], Any], kind: str) -> tuple[Any, ...]:
    """Comma-separated values, each parsed by ``parse``; empty items ("0,,1", a trailing comma) and repeats
    are refused rather than skipped or counted twice."""
    items = text.split(",")
    try:
        values = tuple(parse(v) for v in items if v.strip())
    except argparse.ArgumentTypeError:
        values = ()
    if not values or len(values) != len(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"lists a value twice: {text!r}")
    return values


def add_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add the dataset options (name, folder, image size, subsets, batch size) ``train`` and ``sweep`` share."""
    p.add_argument("--dataset", required=required, type=dataset_name, metavar="NAME", help=f"dataset: {DATASET_HELP}")
    p.add_argument("--data-dir", help="dataset directory (default: Debian's location for fashion-mnist, ./data else)")
    p.add_argument("--image-size", type=image_size,
                   help="pad/resize images to this side length (default: as stored; an ImageFolder whose images "
                        "differ in size: their most common size)")
    p.add_argument("--train-subset", type=count, help="use this many training images (seeded choice)")
    p.add_argument("--test-subset", type=count, help="evaluate on this many test images (seeded choice)")
    p.add_argument("--batch-size", type=count, default=128, help="training batch size (default 128)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``auto`` picks CUDA when there is one)."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")


def resolve_device(name: str) -> torch.device:
    """The torch device ``--device`` names; a usage error (`DataError`) when it is not available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ArgumentError(f"--device {name!r} is not a torch device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"--device {name}: this torch build or machine has no CUDA device; use --device cpu")
    return device


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Add the options that choose where cells run: the engine, its workers and threads, Ray's address
    and the resources each cell asks for."""
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a pool of processes on this machine (default); ray: Ray tasks (a private Ray "
                        "on 127.0.0.1, or the cluster at --address); serial: one after another in this process")
    p.add_argument("--workers", type=count, help="worker processes (default: the cores available // --threads)")
    p.add_argument("--threads", type=count, help="torch threads per worker (default 1)")
    p.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://HOST:10001 (--engine ray)")
    p.add_argument("--cpus-per-cell", type=count, default=1, help="CPU cores Ray reserves per cell (default 1)")
    p.add_argument("--gpus-per-cell", type=non_negative_float, default=0.0,
                   help="GPUs Ray reserves per cell (default 0)")
    p.add_argument("--chips-per-cell", type=count,
                   help="split each fault rate's chips into evaluate cells of this many chips, so that few fault "
                        "rates still keep every worker busy (default: one cell per fault rate; same results)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `rramfx.sweep` that `add_engine_args`'s options give."""
    return {"engine": args.engine, "workers": args.workers, "threads": args.threads, "address": args.address,
            "cpus_per_cell": args.cpus_per_cell, "gpus_per_cell": args.gpus_per_cell,
            "chips_per_cell": args.chips_per_cell}


def add_speed_args(p: argparse.ArgumentParser) -> None:
    """Add the training speed options (`rramfx.train`'s ``compile``, ``channels_last``, ``precision``),
    off by default: they pay on some models only (benchmarks/README.md)."""
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward (eager, with a warning, if compilation fails)")
    p.add_argument("--channels-last", action="store_true", help="model and batches in channels-last memory format")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="bf16: autocast the forward to bfloat16; fp32: no autocast (default: bf16 on CUDA only)")
