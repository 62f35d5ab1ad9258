"""``rramfx train``: train a prepared model on a dataset and save it for ``rramfx evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rramfx.cli.arguments import add_data_args, add_device_arg, resolve_device
from rramfx.cli.common import add_model_args, add_policy_args, policy_from_args
from rramfx.data.loader import ImageLoader
from rramfx.data.registry import load_dataset
from rramfx.evaluation.chips import evaluate
from rramfx.graph.record import rramfx_meta
from rramfx.models.spec import create_model
from rramfx.policy import Policy
from rramfx.preparation import prepare
from rramfx.training.loop import SCHEDULES, train
from rramfx.training.saved import save_prepared

__all__ = ["model_kwargs", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a prepared model (DropConnect on its RRAM layers) and save it",
        description="Prepare a model with a policy, train it with DropConnect at the policy's drop rate on "
                    "the RRAM layers, report its fault-free test accuracy and save it for `rramfx evaluate`. "
                    "Training resumes from OUT.ckpt if an earlier run was interrupted.",
    )
    add_model_args(p)
    p.add_argument("--width", type=float, default=1.0,
                   help="channel multiplier: reference models are built wider, others widened (default 1)")
    add_policy_args(p)
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate of SGD (default 0.1)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule (default cosine)")
    p.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--out", required=True, help="file to write the trained model to (.pt)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing OUT.ckpt and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    p.set_defaults(run=run, num_classes=None, in_chans=None)


def model_kwargs(args: argparse.Namespace, num_classes: int, in_chans: int) -> dict:
    kwargs = {"num_classes": num_classes, "in_chans": in_chans}
    if args.width != 1.0 and ":" not in args.model:
        kwargs["width"] = args.width  # a reference model, built wide; others get Policy.widen
    return kwargs


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    train_data = load_dataset(args.dataset, "train", args.data_dir).subset(args.train_subset, seed=0)
    test_data = load_dataset(args.dataset, "test", args.data_dir).subset(args.test_subset, seed=1)
    num_classes = args.num_classes or train_data.num_classes
    in_chans = args.in_chans or train_data.in_chans
    policy = policy_from_args(args)
    if args.width != 1.0 and ":" in args.model:
        policy = Policy.from_dict({**policy.to_dict(), "widen": args.width})
    kwargs = model_kwargs(args, num_classes, in_chans)
    common = {"image_size": args.image_size, "in_chans": in_chans, "device": device}
    example = next(iter(ImageLoader(train_data.subset(2), 2, **{**common, "device": "cpu"})))[0]
    torch.manual_seed(args.seed)
    gm = prepare(create_model(args.model, **kwargs), policy, example_inputs=example).to(device)
    train_loader = ImageLoader(train_data, args.batch_size, shuffle=True, augment=not args.no_augment,
                               drop_last=len(train_data) > args.batch_size, seed=args.seed, **common)
    test_loader = ImageLoader(test_data, max(256, args.batch_size), **common)
    out = Path(args.out)
    ckpt = out.with_name(out.name + ".ckpt")
    print(f"training {args.model} on {args.dataset} ({len(train_data):,} images, {args.epochs} epochs) with "
          f"drop rate {policy.drop_rate:g} on {device}")
    history = train(gm, train_loader, args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                    schedule=args.schedule, checkpoint=ckpt, resume=not args.no_resume, seed=args.seed,
                    progress=not args.quiet)
    for r in history:
        print(f"epoch {r['epoch']:3d}: loss {r['loss']:.4f}, train accuracy {100 * r['train_accuracy']:.2f}%, "
              f"{r['seconds']:.1f} s")
    clean = evaluate(gm, test_loader)
    print(f"fault-free test accuracy: {100 * clean:.2f}% on {len(test_data):,} images")
    save_prepared(out, gm, model=args.model, model_kwargs=kwargs, policy=rramfx_meta(gm).get("policy"),
                  input_shape=tuple(example.shape[1:]),
                  info={"dataset": args.dataset, "data_dir": args.data_dir, "image_size": args.image_size,
                        "clean_accuracy": clean, "history": history, "seed": args.seed})
    ckpt.unlink(missing_ok=True)
    print(f"saved {out}")
    return 0
