"""The inference-scale ablation: faulty accuracy of one trained model with and without the 1/(1-p')
weight scale and with and without BatchNorm recalibration (the paper's Algorithm 1).

Four variants per fault rate p', all evaluated with `rramfx.monte_carlo` on the same chips:

- ``scale+recal`` (the paper's method): BN re-estimated under DropConnect at p', weights scaled by 1/(1-p');
- ``scale``: the training-time BN statistics, weights scaled by 1/(1-p');
- ``recal``: BN re-estimated under DropConnect at p' *without* the scale, no scale at inference
  (`recalibrate_bn(..., scale=False)`), so BatchNorm alone absorbs the lost weight magnitude;
- ``none``: the trained model as it is on the faulty chip.

Usage (after the ResNet-20 sweep of run_cpu.sh wrote its models):

    python reproduction/ablation.py --model-file reproduction/results/c1_resnet20/models/drop0.2_seed0.pt \
        --out reproduction/results/ablation
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import rramfx
from rramfx.data import ImageLoader, load_dataset

VARIANTS = {"scale+recal": (True, True), "scale": (True, False), "recal": (False, True), "none": (False, False)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-file", required=True, help="a model saved by rramfx sweep/train")
    ap.add_argument("--fault-rates", default="0.1,0.2,0.3", help="SA1 rates (default 0.1,0.2,0.3)")
    ap.add_argument("--trials", type=int, default=100, help="simulated chips per cell (default 100)")
    ap.add_argument("--chip-seed", type=int, default=0)
    ap.add_argument("--train-subset", type=int, default=6000, help="training images for recalibration")
    ap.add_argument("--test-subset", type=int, default=300)
    ap.add_argument("--recal-batches", type=int, default=8, help="batches of 128 per recalibration (0: one full pass)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"which of {', '.join(VARIANTS)} (default: all)")
    ap.add_argument("--out", required=True, help="folder for results.json and results.md")
    args = ap.parse_args()
    gm, record = rramfx.load_prepared(args.model_file)
    in_chans = record["model_kwargs"].get("in_chans", 1)
    train = load_dataset("fashion-mnist", "train").subset(args.train_subset, seed=0)
    test = load_dataset("fashion-mnist", "test").subset(args.test_subset, seed=1)
    test_loader = ImageLoader(test, 256, in_chans=in_chans)
    clean = rramfx.evaluate(gm, test_loader)
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    recal_batches = args.recal_batches or None
    rows = []
    for p in (float(v) for v in args.fault_rates.split(",")):
        for name, (scale, recal) in variants.items():
            start = time.perf_counter()
            chip_model = copy.deepcopy(gm)
            if recal:
                recal_loader = ImageLoader(train, 128, shuffle=True, in_chans=in_chans, seed=7777)
                rramfx.recalibrate_bn(chip_model, recal_loader, p, batches=recal_batches, scale=scale)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the unscaled variants warn on purpose
                result = rramfx.monte_carlo(chip_model, test_loader, rramfx.FaultModel(sa1=p), args.trials,
                                            args.chip_seed, fault_rate=p if scale else 0.0)
            rows.append({"fault_rate": p, "variant": name, "scale": scale, "recalibrate": recal,
                         "accuracy": result.mean, "chip_std": result.std, "chip_min": result.min,
                         "chip_max": result.max, "trials": result.trials, "samples": result.samples,
                         "seconds": time.perf_counter() - start})
            print(f"p'={p:g} {name:12s} {100 * result.mean:6.2f}% ± {100 * result.std:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"model_file": args.model_file, "clean_accuracy": clean,
                                                  "args": vars(args), "rows": rows}, indent=1) + "\n")
    rates = sorted({r["fault_rate"] for r in rows})
    lines = [f"Fault-free accuracy: {100 * clean:.2f}%", "",
             "| variant | " + " | ".join(f"{100 * p:g}% SA1" for p in rates) + " |",
             "|---|" + "---:|" * len(rates)]
    for name in variants:
        cells = [next(r for r in rows if r["variant"] == name and r["fault_rate"] == p) for p in rates]
        lines.append(f"| {name} | " + " | ".join(f"{100 * c['accuracy']:.2f} ± {100 * c['chip_std']:.2f}"
                                                 for c in cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
