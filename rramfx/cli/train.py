"""``rramfx train``: train a prepared model on a dataset and save it for ``rramfx evaluate``: one
`rramfx.experiment.cells.train_cell`, the very computation a sweep makes for the same key."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from rramfx.checks import writable_file
from rramfx.cli.arguments import (
    add_data_args,
    add_device_arg,
    add_speed_args,
    count,
    non_negative_float,
    non_negative_int,
    positive_float,
    resolve_device,
)
from rramfx.cli.common import add_model_args, add_policy_args, policy_from_args
from rramfx.errors import ArgumentError
from rramfx.experiment.cells import CellData, DataSpec, TrainKey, TrainSettings, train_cell
from rramfx.models.recipe import ModelRecipe
from rramfx.models.spec import create_model
from rramfx.models.weights import load_weights, read_weights
from rramfx.training.distributed import finish, init_distributed, rank_device
from rramfx.training.loop import SCHEDULES, TrainOptions

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rramfx train`` and its options to the subcommand parsers."""
    p = sub.add_parser(
        "train", help="train a prepared model (DropConnect on its RRAM layers) and save it",
        description="Prepare a model with a policy, train it with DropConnect at the policy's drop rate on "
                    "the RRAM layers, report its fault-free test accuracy and save it for `rramfx evaluate`, "
                    "with the data spec (dataset, image size, normalisation, class names, test subset) that "
                    "evaluate and export reuse. Training resumes from OUT.ckpt if an earlier run was "
                    "interrupted; an existing OUT is kept unless --overwrite.",
    )
    add_model_args(p)
    p.add_argument("--width", type=positive_float, default=1.0,
                   help="channel multiplier: reference models are built wider, others widened (default 1)")
    add_policy_args(p)
    add_data_args(p)
    p.add_argument("--epochs", type=count, default=10, help="training epochs (default 10)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="peak learning rate of SGD (default 0.1)")
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule (default cosine)")
    p.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    add_speed_args(p)
    p.add_argument("--seed", type=non_negative_int, default=0, help="training seed (default 0)")
    p.add_argument("--out", required=True, help="file to write the trained model to (.pt)")
    p.add_argument("--overwrite", action="store_true", help="train again even if OUT exists (default: skip)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing OUT.ckpt and start over")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or per-epoch lines while training (the epochs are listed at the end)")
    add_device_arg(p)
    p.set_defaults(run=run)


def _model_fn(args: argparse.Namespace, recipe: ModelRecipe) -> Callable[[], nn.Module] | None:
    """How to build the model when it starts from --weights or --pretrained (None: the recipe's)."""
    if args.weights is None and args.pretrained is None:
        return None
    kwargs = recipe.model_kwargs()
    if args.pretrained is not None and not args.model.startswith("timm:"):
        raise ArgumentError(f"--pretrained {args.pretrained}: only timm models (timm:NAME) read a pretrained file; "
                            "use --weights FILE for other models")
    if args.weights is not None:
        read_weights(args.weights)  # a bad file is reported before the data is read

    def build() -> nn.Module:
        model = create_model(args.model, **kwargs, **({"pretrained_file": args.pretrained} if args.pretrained else {}))
        if args.weights is not None:
            load_weights(model, args.weights, what=f"{args.model} ({kwargs['num_classes']} classes, "
                                                   f"{kwargs['in_chans']} input channels)")
        return model

    return build


def _checkpoint_epoch(ckpt: Path) -> int | None:
    """The number of finished epochs a training checkpoint holds (None: no readable checkpoint)."""
    if not ckpt.is_file():
        return None
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return None


def run(args: argparse.Namespace) -> int:
    """Train one cell (`train_cell`) from the command line, print its history and save the model with
    its data spec. An existing OUT is kept (unless --overwrite); Ctrl-C says how to resume. Under
    torchrun, one training on all ranks; rank 0 prints and saves (`rramfx.training.distributed`)."""
    out = writable_file("--out", args.out)  # a folder, or no way to write the model and OUT.ckpt: refused now
    ckpt = out.with_name(out.name + ".ckpt")
    if out.exists() and not args.overwrite:
        print(f"{out} exists: nothing to train (pass --overwrite to train again, or another --out)")
        return 0
    device = rank_device(resolve_device(args.device))
    ranks = init_distributed(device)
    say = print if ranks.main else (lambda *_: None)
    spec = DataSpec(args.dataset, args.data_dir, args.image_size, args.train_subset, args.test_subset,
                    args.batch_size, augment=not args.no_augment)
    policy = policy_from_args(args)
    options = TrainOptions(args.epochs, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
                           compile=args.compile, channels_last=args.channels_last, precision=args.precision)
    data = CellData(spec, device, num_classes=args.num_classes, in_chans=args.in_chans)
    key = TrainKey(ModelRecipe(args.model, data.num_classes, data.in_chans, args.width), policy.drop_rate, args.seed)
    model_fn = _model_fn(args, key.recipe)
    say(f"training {args.model} on {args.dataset} ({len(data.train_data):,} images, {data.num_classes} classes, "
        f"{args.epochs} epochs) with drop rate {policy.drop_rate:g} on {device}"
        + (f" x {ranks.world_size} ranks" if ranks.distributed else ""))
    done = None if args.no_resume else _checkpoint_epoch(ckpt)
    if done is not None:
        say(f"resuming from {ckpt}: {done} of {args.epochs} epochs done")
    try:
        trained = train_cell(key, TrainSettings(policy, options, spec), data, device=device, checkpoint=ckpt,
                             resume=not args.no_resume, model_fn=model_fn, progress=not args.quiet)
    except KeyboardInterrupt:
        done = _checkpoint_epoch(ckpt)
        where = f"from {ckpt} ({done} epochs done)" if done else "(no epoch had finished: it starts over)"
        print(f"\ninterrupted: run the same command again to resume {where}", file=sys.stderr)
        return 130
    if args.quiet:
        for r in trained.history:
            compiled = f" (compile {r['compile_seconds']:.1f} s)" if "compile_seconds" in r else ""
            say(f"epoch {r['epoch']:3d}: loss {r['loss']:.4f}, train accuracy {100 * r['train_accuracy']:.2f}%, "
                f"{r['seconds']:.1f} s{compiled}")
    say(f"fault-free test accuracy: {100 * trained.clean_accuracy:.2f}% on {len(data.test_data):,} images")
    data_spec = {**data.train_data.describe(), "dataset": args.dataset, "data_dir": args.data_dir,
                 "image_size": args.image_size, "train_subset": args.train_subset, "test_subset": args.test_subset}

    def save() -> None:
        trained.save(out, info={"weights": args.weights, "pretrained": args.pretrained}, data=data_spec)
        ckpt.unlink(missing_ok=True)
        print(f"saved {out}")

    ranks.on_main(save)
    finish()
    return 0
