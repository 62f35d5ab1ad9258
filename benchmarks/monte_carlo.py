"""Monte-Carlo evaluation time against ``trials`` plain evaluations of the same model and data.

Four things are timed in one process, interleaved round by round so that machine noise hits them
alike, on the same test batches (already on the device, so the loader costs nothing to any of them):

- plain:   ``trials`` × ``rramfx.evaluate(gm, batches)`` with no faults (the target's denominator);
- MC:      ``rramfx.monte_carlo(gm, batches, FaultModel(sa1=...), trials)``;
- MC old:  the same with the fault path rramfx used before (float32 uniforms and three comparisons per
  draw, ``corrupt`` by ``torch.where`` then the scale), kept here, in the benchmark only, for comparison;
- naive:   ``trials`` × (``inject_faults`` + ``evaluate``): the crossbar layers corrupt and rescale
  their weights on every forward pass (faulty inference through the layers, for comparison);
- with ``--parallel``: ``parallel_monte_carlo`` of the same chips on 1 worker process × 1 thread and on
  2 workers × 1 thread (the local engine; pool start, model and data transfer included), whose
  accuracies are checked equal to ``monte_carlo``'s; run it with ``--threads 1`` so that every row
  computes on one thread.

The ratios of medians are printed, with the extra time per chip; the targets are MC / plain ≤ 1.02 for
resnet20 and ≤ 1.12 for torchvision's resnet18 at 1,024 images per chip (issue 11: ≤ 1.05), and 1 worker
/ 2 workers ≥ 1.7.

    python benchmarks/monte_carlo.py [--device cpu|cuda] [--models resnet20,tv:resnet18] [--trials 10]
        [--batch 256] [--samples 1024] [--no-old] [--no-naive] [--parallel] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

import rramfx
from rramfx.crossbar.faults import SA0, SA1, BaseFaultModel, FaultModel
from rramfx.evaluation import chips as chips_module
from rramfx.evaluation.parallel_chips import parallel_monte_carlo
from rramfx.models.spec import create_model


def old_sample(self: FaultModel, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
    """FaultModel.sample before the integer draws (the same codes, more passes)."""
    u = rng.random(tuple(shape), dtype=np.float32)
    codes = np.zeros(u.shape, dtype=np.uint8)
    codes[u < self.sa1] = SA1
    codes[(u >= self.sa1) & (u < self.sa1 + self.sa0)] = SA0
    return torch.from_numpy(codes)


@contextlib.contextmanager
def fault_path(variant: str) -> Iterator[None]:
    """Run with the old sampler and the corrupt-then-scale eval weight for ``variant == "old"``; with
    every chip drawn on the evaluating thread (as where no core is spare) for ``variant == "inline"``."""
    if variant == "old":
        saved = FaultModel.sample, FaultModel.read_weight
        FaultModel.sample, FaultModel.read_weight = old_sample, BaseFaultModel.read_weight
    elif variant == "inline":
        saved_cores = chips_module.available_cores
        chips_module.available_cores = torch.get_num_threads
    try:
        yield
    finally:
        if variant == "old":
            FaultModel.sample, FaultModel.read_weight = saved
        elif variant == "inline":
            chips_module.available_cores = saved_cores


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes, synchronised on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def make_batches(args: argparse.Namespace, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, args.samples, args.batch):
        n = min(args.batch, args.samples - start)
        batches.append((torch.randn(n, args.in_chans, args.size, args.size, generator=g).to(device),
                        torch.randint(0, 10, (n,), generator=g).to(device)))
    return batches


def measure(spec: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Median seconds of each variant for one model (see the module docstring)."""
    torch.manual_seed(0)
    gm = rramfx.prepare(create_model(spec, num_classes=10, in_chans=args.in_chans),
                        rramfx.Policy(fault_rate=args.fault_rate)).to(device).eval()
    batches = make_batches(args, device)
    fm = rramfx.FaultModel(sa1=args.fault_rate, sa0=args.sa0)

    def plain() -> None:
        for _ in range(args.trials):
            rramfx.evaluate(gm, batches)

    def mc(variant: str) -> Callable[[], None]:
        def run() -> None:
            with fault_path(variant):
                rramfx.monte_carlo(gm, batches, fm, trials=args.trials, seed=0)
        return run

    def naive() -> None:
        for i in range(args.trials):
            rramfx.inject_faults(gm, fm, seed=rramfx.chip_seed(0, i))
            rramfx.evaluate(gm, batches)
        rramfx.clear_faults(gm)

    def par(workers: int) -> Callable[[], None]:
        def run() -> None:
            result = parallel_monte_carlo(gm, batches, fm, trials=args.trials, seed=0, workers=workers, threads=1)
            assert result.accuracies == reference.accuracies, "parallel chips differ from monte_carlo's"
        return run

    variants = {"plain": plain, "mc": mc("new"), "mc_inline": mc("inline"), "mc_old": mc("old"), "naive": naive,
                "par1": par(1), "par2": par(2)}
    if args.no_old or device.type != "cpu":
        del variants["mc_old"]
    if device.type != "cpu":  # a GPU run always draws ahead
        del variants["mc_inline"]
    if args.no_naive:
        del variants["naive"]
    if not args.parallel:
        del variants["par1"], variants["par2"]
    reference = rramfx.monte_carlo(gm, batches, fm, trials=args.trials, seed=0) if args.parallel else None
    with torch.no_grad():
        rramfx.evaluate(gm, batches)  # warm-up (cuDNN autotuning, allocator)
        rramfx.monte_carlo(gm, batches, fm, trials=1)
        if args.parallel:  # start the forkserver (it imports torch once per process) outside the timings
            parallel_monte_carlo(gm, batches, fm, trials=1, workers=1, threads=1)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    layers = rramfx.crossbar_layers(gm)
    return {"model": spec, "rram_layers": len(layers), "rram_weights": sum(m.weight.numel() for m in layers.values()),
            **{k: statistics.median(v) for k, v in times.items()}}


def report(r: dict, trials: int) -> None:
    per_chip = 1e3 * r["plain"] / trials
    print(f"model {r['model']}: {r['rram_layers']} RRAM layers, {r['rram_weights']:,} RRAM weights")
    print(f"  {'':26s} {'seconds':>8s} {'per chip ms':>12s} {'extra ms':>9s} {'ratio':>6s}")
    for name, label in (("plain", "plain eval x trials"), ("mc", "monte_carlo"),
                        ("mc_inline", "monte_carlo, no draw-ahead"), ("mc_old", "monte_carlo, old faults"),
                        ("naive", "inject + eval (naive)"), ("par1", "parallel, 1 worker x 1 thr"),
                        ("par2", "parallel, 2 workers x 1 thr")):
        if name in r:
            chip = 1e3 * r[name] / trials
            print(f"  {label:26s} {r[name]:8.2f} {chip:12.1f} {chip - per_chip:9.1f} {r[name] / r['plain']:6.3f}")
    if "par2" in r:
        print(f"  speed-up of 2 workers over 1 worker: {r['par1'] / r['par2']:.2f}x (chips identical)")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--models", default="resnet20,tv:resnet18", help="comma-separated model specs")
    ap.add_argument("--trials", type=int, default=10, help="simulated chips per Monte-Carlo run (default 10)")
    ap.add_argument("--batch", type=int, default=256, help="evaluation batch size (default 256)")
    ap.add_argument("--samples", type=int, default=1024, help="test images (default 1024)")
    ap.add_argument("--size", type=int, default=32, help="image side length (default 32)")
    ap.add_argument("--in-chans", type=int, default=3, help="image channels (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    ap.add_argument("--fault-rate", type=float, default=0.1, help="SA1 rate of the chips (default 0.1)")
    ap.add_argument("--sa0", type=float, default=0.0, help="SA0 rate of the chips (default 0)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-old", action="store_true", help="skip the old fault path")
    ap.add_argument("--no-naive", action="store_true", help="skip inject + eval")
    ap.add_argument("--parallel", action="store_true", help="also time parallel_monte_carlo on 1 and 2 workers")
    ap.add_argument("--quick", action="store_true", help="2 chips, 64 images, 1 round: checks the script runs")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.samples, args.batch, args.rounds = 2, 64, 32, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dev = (torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {dev}; torch {torch.__version__}; {args.samples} images {args.in_chans}x{args.size}x{args.size}, "
          f"batch {args.batch}; {args.trials} chips at SA1 {args.fault_rate:g}, SA0 {args.sa0:g}; median of "
          f"{args.rounds} interleaved rounds; {load()}", flush=True)
    for spec in args.models.split(","):
        report(measure(spec, args, device), args.trials)
    print(load())


if __name__ == "__main__":
    main()
