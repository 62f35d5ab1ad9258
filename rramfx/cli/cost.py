"""``rramfx cost``: prepare a model and print its crossbar tiles, latency and energy per inference."""

from __future__ import annotations

import argparse
import warnings

import torch

from rramfx.cli.arguments import count, image_shape, positive_float
from rramfx.cli.hardware import add_hardware_args, hardware_from_args
from rramfx.cost.estimate import estimate_cost
from rramfx.models.recipe import ModelRecipe
from rramfx.policy import Policy

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cost", help="estimate crossbar tiles, latency and energy of a prepared model",
        description="Prepare a model with a policy (default: the paper's, k x k convolutions on RRAM) and "
                    "estimate per layer its MACs, crossbar tiles, latency and energy for one input, on a "
                    "64-chip ISAAC accelerator and a CPU host (see docs/cost-model.md).")
    p.add_argument("model", metavar="MODEL",
                   help="timm:NAME, tv:NAME, pkg.module:factory, or a reference model name (resnet20, vgg13, ...)")
    p.add_argument("--width", type=positive_float, default=1.0,
                   help="channel multiplier: reference models are built wider, others widened (default 1)")
    p.add_argument("--input-shape", type=image_shape, default=(3, 32, 32), metavar="C,H,W",
                   help="shape of one input; C is also the model's input channels (default 3,32,32)")
    p.add_argument("--num-classes", type=count, default=10, help="number of outputs (default 10)")
    p.add_argument("--policy", help="policy file (.json or .toml); default: rramfx.Policy(), the paper's")
    add_hardware_args(p, performance=True)
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rramfx.preparation import prepare

    shape = args.input_shape
    hardware = hardware_from_args(args)
    policy = Policy.from_file(args.policy) if args.policy else Policy()
    recipe = ModelRecipe(args.model, num_classes=args.num_classes, in_chans=shape[0], width=args.width)
    policy = recipe.policy(policy)
    model = recipe.create().eval()
    x = torch.zeros(1, *shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = prepare(model, policy, example_inputs=x if policy.widen != 1.0 else None)
        report = estimate_cost(gm, x, hardware)
    print(report.to_json() if args.json else report.table())
    for w in caught:
        print(f"warning: {w.message}")
    return 0
