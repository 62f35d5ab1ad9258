"""Arguments shared by the experiment subcommands (train, evaluate, sweep): data, device, rate lists."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from rramfx.data.registry import DATASETS
from rramfx.engines import ENGINES
from rramfx.errors import ArgumentError
from rramfx.training.fastpath import PRECISIONS

__all__ = ["add_data_args", "add_device_arg", "add_engine_args", "add_speed_args", "dataset_name", "engine_options",
           "int_list", "rate_list", "resolve_device"]

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


def rate_list(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.2"`` → ``(0.0, 0.1, 0.2)``; argparse reports a bad list as a usage error."""
    return _comma_list(text, float, "numbers such as 0,0.1,0.2")


def int_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → ``(0, 1, 2)``."""
    return _comma_list(text, int, "integers such as 0,1,2")


def _comma_list(text: str, cast: Callable[[str], Any], kind: str) -> tuple[Any, ...]:
    try:
        values = tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one of the comma-separated {kind}")
    return values


def add_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add the dataset options (name, folder, image size, subsets, batch size) ``train`` and ``sweep`` share."""
    p.add_argument("--dataset", required=required, type=dataset_name, metavar="NAME", help=f"dataset: {DATASET_HELP}")
    p.add_argument("--data-dir", help="dataset directory (default: Debian's location for fashion-mnist, ./data else)")
    p.add_argument("--image-size", type=int,
                   help="pad/resize images to this side length (default: as stored; an ImageFolder whose images "
                        "differ in size: their most common size)")
    p.add_argument("--train-subset", type=int, help="use this many training images (seeded choice)")
    p.add_argument("--test-subset", type=int, help="evaluate on this many test images (seeded choice)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")


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
    p.add_argument("--workers", type=int, help="worker processes (default: the cores available // --threads)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    p.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://HOST:10001 (--engine ray)")
    p.add_argument("--cpus-per-cell", type=int, default=1, help="CPU cores Ray reserves per cell (default 1)")
    p.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs Ray reserves per cell (default 0)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `rramfx.sweep` that `add_engine_args`'s options give."""
    return {"engine": args.engine, "workers": args.workers, "threads": args.threads, "address": args.address,
            "cpus_per_cell": args.cpus_per_cell, "gpus_per_cell": args.gpus_per_cell}


def add_speed_args(p: argparse.ArgumentParser) -> None:
    """Add the training speed options (`rramfx.train`'s ``compile``, ``channels_last``, ``precision``),
    off by default: they pay on some models only (benchmarks/README.md)."""
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward (eager, with a warning, if compilation fails)")
    p.add_argument("--channels-last", action="store_true", help="model and batches in channels-last memory format")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="bf16: autocast the forward to bfloat16; fp32: no autocast (default: bf16 on CUDA only)")
