"""Hardware arguments shared by ``rramfx cost`` and ``rramfx export``: the crossbar array, cells per
weight and, for the cost model, the chip count, parsed into one `rramfx.Hardware`.

One parser for both commands, so that ``--tile 64x64 --cells-per-weight 2`` gives the same tile counts
in a cost report and in an exported ONNX file.
"""

from __future__ import annotations

import argparse

from rramfx.cli.arguments import count
from rramfx.crossbar.hardware import PAPER_CHIPS, Hardware

__all__ = ["add_hardware_args", "hardware_from_args", "parse_tile"]


def add_hardware_args(parser: argparse.ArgumentParser, *, performance: bool) -> None:
    """Add ``--tile`` and ``--cells-per-weight`` to ``parser``, and ``--chips`` with ``performance``
    (the figures only the cost model reads)."""
    parser.add_argument("--tile", type=parse_tile, default="128x128", metavar="ROWSxCOLS",
                        help="crossbar array size for the tile counts (default 128x128)")
    parser.add_argument("--cells-per-weight", type=count, default=1,
                        help="cells holding one weight, side by side (default 1: an 8-bit weight per cell)")
    if performance:
        parser.add_argument("--chips", type=count, default=PAPER_CHIPS,
                            help=f"accelerator chips (default {PAPER_CHIPS})")


def parse_tile(text: str) -> tuple[int, int]:
    """``--tile``: ``"128x128"`` → ``(128, 128)``; anything else is an argparse usage error naming the flag."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 128x128, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"must be two positive integers like 128x128, got {text!r}")
    return rows, cols


def hardware_from_args(args: argparse.Namespace) -> Hardware:
    """The `rramfx.Hardware` of the arguments `add_hardware_args` added (their values were checked when
    parsed; a combination `Hardware` refuses is a `rramfx.CostError` naming its field)."""
    return Hardware(tile=args.tile, cells_per_weight=args.cells_per_weight,
                    chips=getattr(args, "chips", PAPER_CHIPS))
