"""Epoch throughput of `rramfx.train` with its speed options against the default (eager, fp32).

Each variant trains its own copy of one prepared model (DropConnect on every RRAM layer) through
`rramfx.training.loop.run_training`, one epoch at a time over a small synthetic data set; the
variants take turns epoch by epoch so that machine noise hits them alike, and the ratio of median
epoch times (images/s over eager's) is the option's gain. The first epoch of each variant is a
warm-up and is not timed; for the compiled variants its ``compile_seconds`` (compiling, plus the one
step that triggered it) is reported separately. Later epochs still include a fresh `run_training`'s
first step of each batch shape (a cache hit) and, for channels_last, the model's conversion and back.

    python benchmarks/train_options.py [--models resnet20,timm:resnet18] [--images 512] [--batch 64]
        [--rounds 5] [--variants eager,channels_last,bf16,compile,...] [--threads N] [--quick]

A variant is ``eager`` or options joined by ``+`` (``compile``, ``channels_last``, ``bf16``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import rramfx
from rramfx.data import ImageLoader, synthetic
from rramfx.models.spec import create_model
from rramfx.training.loop import TrainOptions, run_training

VARIANTS = "eager,channels_last,bf16,compile,compile+channels_last,compile+channels_last+bf16"


def options_of(variant: str) -> TrainOptions:
    parts = set() if variant == "eager" else set(variant.split("+"))
    unknown = parts - {"compile", "channels_last", "bf16"}
    if unknown:
        raise SystemExit(f"unknown option(s) in variant {variant!r}: {sorted(unknown)}")
    return TrainOptions(1, lr=0.01, schedule="constant", compile="compile" in parts,
                        channels_last="channels_last" in parts, precision="bf16" if "bf16" in parts else "fp32")


def measure(spec: str, variants: list[str], images: int, batch: int, size: int, rounds: int,
            drop_rate: float) -> tuple[dict[str, float], dict[str, float]]:
    """Median epoch seconds and warm-up compile seconds of each variant of one model."""
    loader = ImageLoader(synthetic(images, num_classes=10, in_chans=3, size=size), batch, shuffle=True, seed=0)
    models = {}
    for v in variants:
        torch.manual_seed(0)
        # fresh weights (timm models are created with pretrained=False)
        models[v] = rramfx.prepare(create_model(spec, num_classes=10), rramfx.Policy(drop_rate=drop_rate))
    compile_s = {}
    for v in variants:  # warm-up epoch: compilation happens here
        record = run_training(models[v], loader, options_of(v), progress=False)[0]
        if "compile_seconds" in record:
            compile_s[v] = record["compile_seconds"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            start = time.perf_counter()
            run_training(models[v], loader, options_of(v), progress=False)
            times[v].append(time.perf_counter() - start)
    return {v: statistics.median(t) for v, t in times.items()}, compile_s


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet20,timm:resnet18", help="comma-separated rramfx model specs")
    ap.add_argument("--variants", default=VARIANTS, help=f"comma-separated (default {VARIANTS})")
    ap.add_argument("--images", type=int, default=512, help="synthetic training images per epoch (default 512)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="timed epochs per variant (default 5)")
    ap.add_argument("--drop-rate", type=float, default=0.2)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true",
                    help="resnet20, eager/channels_last/compile, 64 images, 1 round: checks the script runs")
    args = ap.parse_args()
    if args.quick:
        args.models, args.variants, args.images, args.batch, args.rounds = (
            "resnet20", "eager,channels_last,compile", 64, 32, 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if variants[0] != "eager":
        raise SystemExit("the first variant must be eager (the denominator)")
    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; {args.size}x{args.size} inputs, "
          f"{args.images} images/epoch, batch {args.batch}, drop rate {args.drop_rate}; median of {args.rounds} "
          f"interleaved epochs after one warm-up epoch; {load()}")
    for spec in args.models.split(","):
        med, compile_s = measure(spec, variants, args.images, args.batch, args.size, args.rounds, args.drop_rate)
        print(f"\n{spec}: {'variant':28s} {'images/s':>9s} {'epoch s':>8s} {'vs eager':>8s}")
        for v in variants:
            print(f"{spec}: {v:28s} {args.images / med[v]:9.1f} {med[v]:8.2f} {med['eager'] / med[v]:7.2f}x")
        best = min(variants, key=med.__getitem__)
        print(f"best: {best} ({med['eager'] / med[best]:.2f}x eager)")
        for v, s in compile_s.items():
            print(f"compile time, {v}: {s:.1f} s (first epoch, on top of its training)")
        print(load(), flush=True)


if __name__ == "__main__":
    main()
