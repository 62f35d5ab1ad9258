"""Monte-Carlo evaluation time against ``trials`` plain evaluations of the same model and data.

Three things are timed in one process, interleaved round by round so that machine noise hits them
alike, on the same test batches (already on the device, so the loader costs nothing to any of them):

- plain:   ``trials`` × ``rramfx.evaluate(gm, batches)`` with no faults (the target's denominator);
- MC:      ``rramfx.monte_carlo(gm, batches, FaultModel(sa1=...), trials)``;
- naive:   ``trials`` × (``inject_faults`` + ``evaluate``): the crossbar layers corrupt and rescale
  their weights on every forward pass (faulty inference through the layers, for comparison).

The ratios of medians are printed; the target is MC / plain ≤ 1.05.

    python benchmarks/monte_carlo.py [--device cpu|cuda] [--model resnet20] [--trials 10] [--batch 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rramfx
from rramfx.models.spec import create_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--model", default="resnet20", help="model spec: resnet20, vgg13, timm:resnet18, ...")
    ap.add_argument("--trials", type=int, default=10, help="simulated chips per Monte-Carlo run (default 10)")
    ap.add_argument("--batch", type=int, default=256, help="evaluation batch size (default 256)")
    ap.add_argument("--samples", type=int, default=1024, help="test images (default 1024)")
    ap.add_argument("--size", type=int, default=32, help="image side length (default 32)")
    ap.add_argument("--in-chans", type=int, default=3, help="image channels (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    ap.add_argument("--fault-rate", type=float, default=0.1, help="SA1 rate of the chips (default 0.1)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_chans=args.in_chans)
    gm = rramfx.prepare(model, rramfx.Policy(fault_rate=args.fault_rate)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, args.samples, args.batch):
        n = min(args.batch, args.samples - start)
        batches.append((torch.randn(n, args.in_chans, args.size, args.size, generator=g).to(device),
                        torch.randint(0, 10, (n,), generator=g).to(device)))
    fm = rramfx.FaultModel(sa1=args.fault_rate)
    rram = len(rramfx.crossbar_layers(gm))
    rram_params = sum(m.weight.numel() for m in rramfx.crossbar_layers(gm).values())

    def plain() -> None:
        for _ in range(args.trials):
            rramfx.evaluate(gm, batches)

    def mc() -> None:
        rramfx.monte_carlo(gm, batches, fm, trials=args.trials, seed=0)

    def naive() -> None:
        for i in range(args.trials):
            rramfx.inject_faults(gm, fm, seed=rramfx.chip_seed(0, i))
            rramfx.evaluate(gm, batches)
        rramfx.clear_faults(gm)

    with torch.no_grad():
        rramfx.evaluate(gm, batches)  # warm-up (cuDNN autotuning, allocator)
        rramfx.monte_carlo(gm, batches, fm, trials=1)
    times: dict[str, list[float]] = {"plain": [], "mc": [], "naive": []}
    for _ in range(args.rounds):
        for name, fn in (("plain", plain), ("mc", mc), ("naive", naive)):
            times[name].append(timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    dev = (torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {dev}; torch {torch.__version__}")
    print(f"model {args.model}: {rram} RRAM layers, {rram_params:,} RRAM weights; {args.samples} images "
          f"{args.in_chans}x{args.size}x{args.size}, batch {args.batch}; {args.trials} chips at SA1 "
          f"{args.fault_rate:g}; median of {args.rounds} interleaved rounds")
    print(f"{'':28s} {'seconds':>8s} {'per chip ms':>12s} {'ratio':>6s}")
    print(f"{'plain eval x trials':28s} {med['plain']:8.2f} {1e3 * med['plain'] / args.trials:12.1f} {1:6.3f}")
    print(f"{'monte_carlo':28s} {med['mc']:8.2f} {1e3 * med['mc'] / args.trials:12.1f} "
          f"{med['mc'] / med['plain']:6.3f}")
    print(f"{'inject + eval (naive)':28s} {med['naive']:8.2f} {1e3 * med['naive'] / args.trials:12.1f} "
          f"{med['naive'] / med['plain']:6.3f}")
    print(f"monte_carlo / (trials x plain eval) = {med['mc'] / med['plain']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
