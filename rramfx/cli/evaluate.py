"""``rramfx evaluate``: Monte-Carlo accuracy of a trained model on simulated faulty chips, one
`rramfx.experiment.cells.evaluate_cell` per fault rate (as a sweep evaluates its cells)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from torch import fx

from rramfx.cli.arguments import (
    DATASET_HELP,
    add_device_arg,
    count,
    dataset_name,
    fraction,
    image_size,
    non_negative_int,
    rate_list,
    resolve_device,
)
from rramfx.cli.common import (
    add_model_args,
    add_policy_args,
    model_from_args,
    model_kwargs_from_args,
    policy_from_args,
)
from rramfx.data.loader import ImageLoader
from rramfx.data.registry import load_dataset
from rramfx.errors import ArgumentError, DataError
from rramfx.evaluation.chips import MonteCarloResult
from rramfx.experiment.cells import Chips, Recalibration, evaluate_cell
from rramfx.experiment.onnxruntime_cell import RUNTIMES
from rramfx.graph.record import rramfx_meta
from rramfx.models.weights import read_weights
from rramfx.preparation import prepare
from rramfx.tables import table_lines
from rramfx.training.saved import load_prepared

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rramfx evaluate`` and its options to the subcommand parsers."""
    p = sub.add_parser(
        "evaluate", help="Monte-Carlo accuracy of a trained model on simulated faulty chips",
        description="Evaluate a model saved by `rramfx train` (or --model SPEC --weights FILE: your own trained "
                    "weights, prepared with the policy flags) on TRIALS simulated chips per fault rate (one "
                    "fault mask per chip, applied to every test batch), with the 1/(1-p') inference scale and, "
                    "with --recalibrate, BatchNorm statistics re-estimated for p' (the paper's Algorithm 1). "
                    "A saved model's dataset, image size and test subset are used unless given here.",
    )
    p.add_argument("model_file", nargs="?", help="a model file written by `rramfx train` (or give --model)")
    add_model_args(p, required=False)
    add_policy_args(p)
    p.add_argument("--dataset", type=dataset_name, metavar="NAME",
                   help=f"dataset to evaluate on (default: the one the model was trained on): {DATASET_HELP}")
    p.add_argument("--data-dir", help="dataset directory (default: the training run's)")
    p.add_argument("--image-size", type=image_size, help="pad/resize images to this side (default: the training run's)")
    p.add_argument("--test-subset", type=count,
                   help="evaluate on this many test images, seeded (default: the training run's subset, else all)")
    p.add_argument("--batch-size", type=count, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--fault-rates", type=rate_list, default=(0.0, 0.1, 0.2, 0.3),
                   help="comma-separated fault rates (default 0,0.1,0.2,0.3)")
    p.add_argument("--sa0-fraction", type=fraction, default=0.0,
                   help="share of faulty cells stuck at SA0 instead of SA1 (default 0, the paper's setting)")
    p.add_argument("--trials", type=count, default=100, help="simulated chips per fault rate (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="chip seed: chip i is drawn from chip_seed(seed, i)")
    p.add_argument("--recalibrate", action="store_true", help="re-estimate BN statistics for each fault rate")
    p.add_argument("--recal-batches", type=non_negative_int, default=None,
                   help="training batches for --recalibrate (default: the whole training set, as `rramfx sweep` "
                        "and SweepConfig.recal_batches; 0 also means all)")
    p.add_argument("--workers", type=count, default=1,
                   help="evaluate the chips in this many worker processes, in contiguous blocks of chips (default "
                        "1: in this process); the accuracies equal the serial run's, chip for chip")
    p.add_argument("--threads", type=count,
                   help="torch threads per worker, or onnxruntime's threads with --runtime onnxruntime (default: "
                        "the cores available // --workers, at least 1; with --workers 1, the runtime's own default)")
    p.add_argument("--channels-last", action="store_true",
                   help="evaluate a channels-last copy of the model on channels-last batches (1.4x faster for "
                        "ResNet-20 on a 2-core CPU; the outputs differ by float rounding)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="simulate the chips in PyTorch (default) or onnxruntime: the same chips, faster per chip "
                        "(1.5-2.6x on CPU models measured), a few seconds of ONNX export per fault rate; "
                        "one process, --threads its intra-op threads")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    p.set_defaults(run=run)


def _model(args: argparse.Namespace, device: torch.device) -> tuple[fx.GraphModule, dict[str, Any]]:
    """The prepared model and its record: from the model file, or from --model/--weights and the policy
    flags (then the dataset is needed, and gives the class and channel counts)."""
    if args.model_file is not None:
        if args.model is not None or args.weights is not None or args.pretrained is not None:
            raise ArgumentError("a model file holds its model and weights: drop --model/--weights/--pretrained")
        return load_prepared(args.model_file, map_location=device)
    if args.model is None:
        raise ArgumentError("give a model file written by `rramfx train`, or --model SPEC (with --weights FILE)")
    if args.dataset is None:
        raise ArgumentError(f"--model {args.model}: give --dataset to evaluate on")
    if args.weights is not None:
        read_weights(args.weights)  # a bad file is reported before the data is read
    train = load_dataset(args.dataset, "train", args.data_dir, image_size=args.image_size)
    model = model_from_args(args, train.num_classes, train.in_chans).eval()
    in_chans = model_kwargs_from_args(args, train.num_classes, train.in_chans)["in_chans"]
    example = ImageLoader(train.subset(2), 2, image_size=args.image_size, in_chans=in_chans)
    gm = prepare(model, policy_from_args(args), example_inputs=next(iter(example))[0]).to(device).eval()
    record = {"model": args.model, "model_kwargs": {"in_chans": in_chans}, "policy": rramfx_meta(gm)["policy"],
              "data": {"dataset": args.dataset, "data_dir": args.data_dir, "image_size": args.image_size}}
    return gm, record


def run(args: argparse.Namespace) -> int:
    """Evaluate a saved model at every fault rate (`evaluate_cell`) and print a table or JSON."""
    device = resolve_device(args.device)
    gm, record = _model(args, device)
    data = record.get("data") or {}
    dataset = args.dataset or data.get("dataset")
    if not dataset:
        raise DataError(f"'{args.model_file}' does not say which dataset it was trained on: pass --dataset")
    same = args.dataset is None or args.dataset == data.get("dataset")
    data_dir = args.data_dir or (data.get("data_dir") if same else None)
    image_size = args.image_size or data.get("image_size")
    test_subset = args.test_subset or (data.get("test_subset") if same else None)
    in_chans = record["model_kwargs"].get("in_chans")
    common = {"image_size": image_size, "in_chans": in_chans, "device": device}
    read = {"image_size": image_size}
    test = ImageLoader(load_dataset(dataset, "test", data_dir, **read).subset(test_subset, seed=1),
                       args.batch_size, **common)
    recal = None
    if args.recalibrate:
        recal = ImageLoader(load_dataset(dataset, "train", data_dir, **read), args.batch_size, shuffle=True, **common)
    chips = Chips(args.trials, args.seed, args.sa0_fraction)
    recalibration = Recalibration(args.recal_batches or None) if args.recalibrate else None
    results = [_evaluate(gm, rate, chips, test, recalibration, recal, args) for rate in args.fault_rates]
    if args.json:
        print(json.dumps([{"fault_rate": r_, **res.to_dict()} for r_, res in zip(args.fault_rates, results,
                                                                                  strict=True)], indent=1))
        return 0
    source = args.model_file or (f"--weights {args.weights}" if args.weights else "fresh weights")
    print(f"{record['model']} from {source}, drop rate {record['policy'].get('drop_rate', 0):g}, "
          f"{results[0].samples:,} {dataset} test images, {args.trials} chips per fault rate"
          + (", BN recalibrated" if args.recalibrate else ""))
    rows = [[f"{rate:g}", f"{100 * res.mean:.2f}", f"{100 * res.std:.2f}", f"{100 * res.min:.2f}",
             f"{100 * res.max:.2f}", f"{100 * res.ci95[0]:.2f}–{100 * res.ci95[1]:.2f}", f"{res.seconds:.1f}"]
            for rate, res in zip(args.fault_rates, results, strict=True)]
    print("\n".join(table_lines(["fault rate", "mean %", "std", "min %", "max %", "95% CI of mean", "s"], rows,
                                ">" * 7)))
    return 0


def _evaluate(gm, rate: float, chips: Chips, test, recalibration: Recalibration | None, recal,
              args: argparse.Namespace) -> MonteCarloResult:
    """`evaluate_cell` with the command's workers and threads (in this process for ``--workers 1`` and
    no ``--threads``)."""
    return evaluate_cell(gm, rate, chips, test, recalibration=recalibration, recal_loader=recal,
                         workers=args.workers, threads=args.threads, progress=not args.quiet,
                         channels_last=args.channels_last, runtime=args.runtime)
