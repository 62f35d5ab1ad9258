"""``rramfx sweep``: train one model per drop rate (and seed), evaluate each on simulated chips at every
fault rate, and write the results table, heatmap and best-drop-rate plot."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from rramfx.checks import writable_folder
from rramfx.cli.arguments import (
    add_data_args,
    add_device_arg,
    add_engine_args,
    add_speed_args,
    count,
    engine_options,
    fraction,
    int_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    rate_list,
    resolve_device,
)
from rramfx.errors import CellsFailedError, SweepError
from rramfx.experiment.config import SweepConfig
from rramfx.experiment.grid import sweep
from rramfx.files import read_settings_file
from rramfx.policy import Policy
from rramfx.training.loop import SCHEDULES

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rramfx sweep`` and its options to the subcommand parsers."""
    p = sub.add_parser(
        "sweep", help="drop rate × fault rate sweep with tables and heatmaps (resumable)",
        description="For every drop rate and training seed: prepare and train the model with DropConnect; "
                    "for every fault rate: optionally recalibrate BatchNorm (Algorithm 1) and evaluate it on "
                    "TRIALS simulated chips. Writes results.csv/json, results.md, heatmap.png and "
                    "best_drop_rate.png to OUT. Re-running resumes; more rates or seeds extend the sweep.",
    )
    p.add_argument("--config", help="sweep settings file (.toml or .json with SweepConfig fields); flags given "
                                    "with other values than their defaults override it")
    p.add_argument("--model", help="timm:NAME, tv:NAME, pkg.module:factory, or a reference model "
                                                  "(resnet20, vgg13, mobilenetv2, mini_mobilenet_<n>)")
    p.add_argument("--num-classes", type=count, help="number of outputs (default: the dataset's)")
    p.add_argument("--in-chans", type=count, help="model input channels (default: the dataset's)")
    p.add_argument("--width", type=positive_float, default=1.0,
                   help="channel multiplier: reference models are built wider, others widened (default 1)")
    add_data_args(p, required=False)
    p.add_argument("--drop-rates", type=rate_list, default=(0.0, 0.1, 0.2, 0.3, 0.4),
                   help="DropConnect rates to train with (default 0,0.1,0.2,0.3,0.4)")
    p.add_argument("--fault-rates", type=rate_list, default=(0.0, 0.1, 0.2, 0.3),
                   help="fault rates to evaluate at (default 0,0.1,0.2,0.3)")
    p.add_argument("--seeds", type=int_list, default=(0,),
                   help="training seeds (default 0, as SweepConfig.seeds: the spread shown is over chips; give "
                        "several, e.g. 0,1,2, for the spread over training seeds too)")
    p.add_argument("--trials", type=count, default=100, help="simulated chips per cell (default 100)")
    p.add_argument("--chip-seed", type=non_negative_int, default=0, help="seed of the simulated chips (default 0)")
    p.add_argument("--epochs", type=count, default=10, help="training epochs per model (default 10)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule (default cosine)")
    p.add_argument("--no-augment", action="store_true", help="no random crops or flips in training")
    p.add_argument("--no-recalibrate", action="store_true", help="skip BN recalibration (keep the 1/(1-p') scale)")
    p.add_argument("--recal-batches", type=count,
                   help="training batches per BN recalibration (default: all, one pass over the training set, "
                        "as SweepConfig.recal_batches and rramfx evaluate)")
    p.add_argument("--sa0-fraction", type=fraction, default=0.0,
                   help="share of faulty cells stuck at SA0 instead of SA1 (default 0, the paper's setting)")
    p.add_argument("--rram-1x1", action="store_true", help="put 1x1 convolutions on RRAM too (paper's Fig. 7)")
    p.add_argument("--pad-shortcuts", action="store_true",
                   help="pad 1x1 shortcut convolutions to 3x3 so they go to RRAM (paper's Fig. 6c)")
    p.add_argument("--policy", help="base policy file (.json/.toml): placement rules and overrides")
    add_speed_args(p)
    p.add_argument("--out", required=True, help="output folder (created; resumed when it holds results)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_engine_args(p)
    add_device_arg(p)
    p.set_defaults(run=run)
    p.set_defaults(sweep_defaults={a.dest: a.default for a in p._actions})


#: SweepConfig fields and the flags that set them (where the names differ).
_FLAG_OF = {"augment": "no_augment", "recalibrate": "no_recalibrate"}


def _config(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> SweepConfig:
    """The sweep the config file and the flags describe: the file's settings, overridden by every flag
    given with another value than its default."""
    data: dict[str, Any] = {}
    if args.config:
        data = read_settings_file(args.config, "sweep settings file (--config)")
    if args.policy:
        data["policy"] = Policy.from_file(args.policy).to_dict()
    for f in fields(SweepConfig):
        flag = _FLAG_OF.get(f.name, f.name)
        if f.name == "policy" or not hasattr(args, flag):  # --policy is a file, read above
            continue
        value = getattr(args, flag)
        if value != parser_defaults.get(flag) or f.name not in data:
            data[f.name] = (not value) if f.name in _FLAG_OF else value
    if not data.get("model"):
        raise SweepError("rramfx sweep needs --model (or a config file with a model)")
    if not data.get("dataset"):
        raise SweepError("rramfx sweep needs --dataset (or a config file with a dataset)")
    return SweepConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the sweep the options describe and print its markdown table. Returns the number
    of failed cells (0: all done; capped at 125)."""
    writable_folder("--out", args.out, SweepError)
    config = _config(args, args.sweep_defaults)
    try:
        sweep(config, args.out, device=resolve_device(args.device), progress=not args.quiet, **engine_options(args))
    except CellsFailedError as e:
        print(f"rramfx sweep: {e}", file=sys.stderr)
        return min(len(e.failed), 125)
    print()
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    return 0
