"""The ``rramfx`` command line. Each subcommand lives in its own module of this package and
registers itself with a ``register(subparsers)`` function listed in ``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from rramfx.engines.allocator import keep_freed_memory
from rramfx.errors import RramfxError
from rramfx.version import __version__

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: Modules of this package that define a subcommand, in the order ``--help`` lists them.
SUBCOMMANDS = ["prepare", "cost", "export", "partition", "inspect", "train", "evaluate", "sweep", "report"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line naming the flag ("rramfx train: error: argument
    --epochs: must be an integer >= 1, got '-1'"), exit code 2, as the toolkit's own errors in `main`;
    the subcommand parsers are of this class too (argparse makes them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``rramfx`` parser with every subcommand of `SUBCOMMANDS`; flag values are checked as they are
    parsed (`rramfx.cli.arguments`), so a bad value stops the command before any work."""
    parser = _Parser(
        prog="rramfx", description="Prepare deep networks for fault-prone RRAM crossbar accelerators."
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
    parser.add_argument("--version", action="version", version=f"rramfx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the subcommand; toolkit errors print as one line (exit code 2,
    as argparse's own), the traceback only with ``rramfx --debug COMMAND``."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # the command owns its process: faster CPU evaluation, the same numbers
    try:
        return int(args.run(args) or 0)
    except (RramfxError, FileNotFoundError) as e:
        if args.debug:
            raise
        message = " ".join(str(e).split())  # one line, whatever the message held
        print(f"rramfx {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = " (train and sweep go on from their last checkpoint)" if args.command in ("train", "sweep") else ""
        print(f"\nrramfx {args.command}: interrupted; run the same command again to resume{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
