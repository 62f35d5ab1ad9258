"""``rramfx prepare``: prepare a model and print its RRAM/CPU placement."""

from __future__ import annotations

import argparse
import json
import warnings

from rramfx.cli.common import add_model_args, add_policy_args, model_from_args, policy_from_args
from rramfx.graph.placement_report import placement, summary
from rramfx.preparation import prepare

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare a model and print its placement summary",
                       description="Trace a model, place its layers on RRAM or CPU, and print the table.")
    add_model_args(p, weights=False)
    add_policy_args(p)
    p.add_argument("--json", action="store_true", help="print the placement as JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    policy = policy_from_args(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = prepare(model, policy)
    if args.json:
        print(json.dumps(placement(gm), indent=2))
    else:
        print(summary(gm))
    for w in caught:
        print(f"warning: {w.message}")
    return 0
