"""Training-step time of a prepared model with DropConnect against the same model without it.

The variants are timed in one process, interleaved round by round so that machine noise hits them
alike; the ratio of medians is the overhead of drawing one Bernoulli mask per RRAM layer per step:

- plain: the prepared model with ``drop_rate=0`` (the denominator);
- new:   rramfx's DropConnect (16-bit integer draws, one-byte mask kept for the backward pass);
- old:   the mask path rramfx used before (float32 uniforms, float mask; kept here, in the benchmark
  only, for comparison; CPU only, on a GPU both are torch's fused dropout).

    python benchmarks/dropconnect_step.py [--device cpu|cuda] [--models timm:resnet18,timm:mobilenetv2_100]
        [--batches 32,128] [--rounds 12] [--no-old] [--quick]

Models are rramfx model specs (``timm:NAME``, ``tv:NAME``, ``resnet20``, ...).
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
from torch import nn

import rramfx
from rramfx.crossbar import layers as crossbar_layers_module
from rramfx.models.spec import create_model


def old_dropconnect(weight: torch.Tensor, p: float) -> torch.Tensor:
    """rramfx's DropConnect before the 16-bit mask (kept to measure the change): float32 uniforms from
    PCG64, a float mask, scaled, multiplied; autograd keeps the float mask for the backward pass."""
    if weight.device.type != "cpu":
        return nn.functional.dropout(weight, p, training=True)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    u = np.random.Generator(np.random.PCG64(seed)).random(weight.shape, dtype=np.float32)
    mask = (u >= p).astype(np.float32)
    mask *= np.float32(1.0 / (1.0 - p))
    return weight * torch.from_numpy(mask).to(weight.dtype)


@contextlib.contextmanager
def mask_path(variant: str) -> Iterator[None]:
    """Run the crossbar layers with the old mask path for ``variant == "old"``."""
    if variant != "old":
        yield
        return
    saved = crossbar_layers_module.dropconnect
    crossbar_layers_module.dropconnect = old_dropconnect
    try:
        yield
    finally:
        crossbar_layers_module.dropconnect = saved


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> float:
    """Seconds of one SGD step (forward, backward, update), synchronised on a GPU."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sync()
    return time.perf_counter() - t


def interleaved(steps: dict[str, Callable[[], float]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each step function, called in turn ``rounds`` times after ``warmup`` calls."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def measure(spec: str, device: str, batch: int, size: int, rounds: int, drop_rate: float, conv_1x1: str,
            old: bool) -> dict:
    """Median step times of the plain, new (and old) variants of one model at one batch size."""
    torch.manual_seed(0)
    model = create_model(spec, num_classes=10)
    variants = ["plain", "new", "old"] if old and device == "cpu" else ["plain", "new"]
    models = {v: rramfx.prepare(model, rramfx.Policy(drop_rate=0.0 if v == "plain" else drop_rate,
                                                     conv_1x1=conv_1x1)).to(device).train() for v in variants}
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opts = {v: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for v, m in models.items()}

    def stepper(v: str) -> Callable[[], float]:
        def step() -> float:
            with mask_path(v):
                return step_time(models[v], x, y, opts[v])
        return step

    med = interleaved({v: stepper(v) for v in variants}, rounds)
    layers = rramfx.crossbar_layers(models["new"])
    return {"model": spec, "batch": batch, "rram_layers": len(layers),
            "rram_weights": sum(m.weight.numel() for m in layers.values()),
            **{f"{v}_ms": 1e3 * t for v, t in med.items()},
            **{f"{v}_ratio": t / med["plain"] for v, t in med.items() if v != "plain"}}


def row(r: dict) -> str:
    old = f"{r['old_ms']:8.1f} {r['old_ratio']:6.3f}" if "old_ms" in r else f"{'-':>8s} {'-':>6s}"
    return (f"{r['model']:21s} {r['batch']:5d} {r['rram_layers']:5d} {r['rram_weights'] / 1e6:7.2f}M "
            f"{r['plain_ms']:8.1f} {old} {r['new_ms']:8.1f} {r['new_ratio']:6.3f}")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="timm:resnet18,timm:mobilenetv2_100", help="comma-separated model specs")
    ap.add_argument("--batches", default="32,128", help="comma-separated batch sizes (default 32,128)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--drop-rate", type=float, default=0.2)
    ap.add_argument("--conv-1x1", default="rram", help="placement of 1x1 convolutions (default rram)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-old", action="store_true", help="skip the old mask path")
    ap.add_argument("--quick", action="store_true", help="3 rounds, batch 4, 16x16: checks the script runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.batches, args.size = 3, "4", 16
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev}; {args.size}x{args.size} inputs, drop rate {args.drop_rate}, 1x1 convs on "
          f"{args.conv_1x1}, median of {args.rounds} interleaved steps; torch {torch.__version__}; {load()}")
    print(f"{'model':21s} {'batch':>5s} {'RRAM':>5s} {'weights':>8s} {'plain ms':>8s} {'old ms':>8s} {'ratio':>6s} "
          f"{'new ms':>8s} {'ratio':>6s}")
    for spec in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            r = measure(spec, args.device, batch, args.size, args.rounds, args.drop_rate, args.conv_1x1,
                        not args.no_old)
            print(row(r), flush=True)
    print(load())


if __name__ == "__main__":
    main()
