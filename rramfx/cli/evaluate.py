"""``rramfx evaluate``: Monte-Carlo accuracy of a trained model on simulated faulty chips, one
`rramfx.experiment.cells.evaluate_cell` per fault rate (as a sweep evaluates its cells)."""

from __future__ import annotations

import argparse
import copy
import json

from rramfx.cli.arguments import add_device_arg, rate_list, resolve_device
from rramfx.data.loader import ImageLoader
from rramfx.data.registry import load_dataset
from rramfx.engines.base import positive_count
from rramfx.errors import DataError
from rramfx.evaluation.chips import MonteCarloResult
from rramfx.evaluation.parallel_chips import parallel_monte_carlo
from rramfx.evaluation.recalibrate import recalibrate_bn
from rramfx.experiment.cells import Chips, Recalibration, evaluate_cell
from rramfx.training.saved import load_prepared

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rramfx evaluate`` and its options to the subcommand parsers."""
    p = sub.add_parser(
        "evaluate", help="Monte-Carlo accuracy of a trained model on simulated faulty chips",
        description="Evaluate a model saved by `rramfx train` on TRIALS simulated chips per fault rate (one "
                    "fault mask per chip, applied to every test batch), with the 1/(1-p') inference scale and, "
                    "with --recalibrate, BatchNorm statistics re-estimated for p' (the paper's Algorithm 1).",
    )
    p.add_argument("model_file", help="a model file written by `rramfx train`")
    p.add_argument("--dataset", help="dataset to evaluate on (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="dataset directory (default: the training run's)")
    p.add_argument("--test-subset", type=int, help="evaluate on this many test images (seeded choice)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--fault-rates", type=rate_list, default=(0.0, 0.1, 0.2, 0.3),
                   help="comma-separated fault rates (default 0,0.1,0.2,0.3)")
    p.add_argument("--sa0-fraction", type=float, default=0.0,
                   help="share of faulty cells stuck at SA0 instead of SA1 (default 0, the paper's setting)")
    p.add_argument("--trials", type=int, default=100, help="simulated chips per fault rate (default 100)")
    p.add_argument("--seed", type=int, default=0, help="chip seed: chip i is drawn from chip_seed(seed, i)")
    p.add_argument("--recalibrate", action="store_true", help="re-estimate BN statistics for each fault rate")
    p.add_argument("--recal-batches", type=int, default=50,
                   help="training batches for --recalibrate (default 50; 0 = the whole training set)")
    p.add_argument("--workers", type=int, default=1,
                   help="evaluate the chips in this many worker processes, in contiguous blocks of chips (default "
                        "1: in this process); the accuracies equal the serial run's, chip for chip")
    p.add_argument("--threads", type=int,
                   help="torch threads per worker (default: the cores available // --workers, at least 1; with "
                        "--workers 1, torch's own default)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate a saved model at every fault rate (`evaluate_cell`) and print a table or JSON."""
    device = resolve_device(args.device)
    gm, record = load_prepared(args.model_file, map_location=device)
    info = record["info"]
    dataset = args.dataset or info.get("dataset")
    if not dataset:
        raise DataError(f"'{args.model_file}' does not say which dataset it was trained on: pass --dataset")
    data_dir = args.data_dir or info.get("data_dir")
    in_chans = record["model_kwargs"].get("in_chans")
    common = {"image_size": info.get("image_size"), "in_chans": in_chans, "device": device}
    test = ImageLoader(load_dataset(dataset, "test", data_dir).subset(args.test_subset, seed=1),
                       args.batch_size, **common)
    recal = None
    if args.recalibrate:
        recal = ImageLoader(load_dataset(dataset, "train", data_dir), args.batch_size, shuffle=True, **common)
    chips = Chips(args.trials, args.seed, args.sa0_fraction)
    recalibration = Recalibration(args.recal_batches or None) if args.recalibrate else None
    results = [_evaluate(gm, rate, chips, test, recalibration, recal, args) for rate in args.fault_rates]
    if args.json:
        print(json.dumps([{"fault_rate": r_, **res.to_dict()} for r_, res in zip(args.fault_rates, results,
                                                                                  strict=True)], indent=1))
        return 0
    print(f"{record['model']} from {args.model_file}, drop rate {record['policy'].get('drop_rate', 0):g}, "
          f"{results[0].samples:,} {dataset} test images, {args.trials} chips per fault rate"
          + (", BN recalibrated" if args.recalibrate else ""))
    print(f"{'fault rate':>10}  {'mean %':>7}  {'std':>5}  {'min %':>6}  {'max %':>6}  {'95% CI of mean':>15}  "
          f"{'s':>6}")
    for rate, res in zip(args.fault_rates, results, strict=True):
        ci = f"{100 * res.ci95[0]:.2f}–{100 * res.ci95[1]:.2f}"
        print(f"{rate:10g}  {100 * res.mean:7.2f}  {100 * res.std:5.2f}  {100 * res.min:6.2f}  {100 * res.max:6.2f}  "
              f"{ci:>15}  {res.seconds:6.1f}")
    return 0


def _evaluate(gm, rate: float, chips: Chips, test, recalibration: Recalibration | None, recal,
              args: argparse.Namespace) -> MonteCarloResult:
    """`evaluate_cell` in this process (``--workers 1`` and no ``--threads``), else the same cell with its
    chips in parallel blocks (`parallel_monte_carlo`)."""
    if args.workers == 1 and args.threads is None:
        return evaluate_cell(gm, rate, chips, test, recalibration=recalibration, recal_loader=recal,
                             progress=not args.quiet)
    positive_count("workers", args.workers, 1)  # before the recalibration, not after it
    positive_count("threads", args.threads, 1)
    fault_model = chips.fault_model(rate)
    if recalibration is not None:  # as evaluate_cell recalibrates, once here before the chips
        gm = copy.deepcopy(gm)
        recal.set_epoch(0)
        recalibrate_bn(gm, recal, fault_model.sa1, batches=recalibration.batches, seed=recalibration.seed,
                       progress=not args.quiet)
    return parallel_monte_carlo(gm, test, fault_model, chips.trials, chips.seed, workers=args.workers,
                                threads=args.threads, fault_rate=fault_model.sa1, progress=not args.quiet)
