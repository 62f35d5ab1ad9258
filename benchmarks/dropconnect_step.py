"""Training-step time of a prepared model with DropConnect against the same model without it.

Both models are timed in one process, interleaved round by round so that machine noise hits both
alike; the ratio of medians is the overhead of drawing one Bernoulli mask per RRAM layer per step.

    python benchmarks/dropconnect_step.py [--device cpu|cuda] [--models resnet18,mobilenetv2_100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from torch import nn

import rramfx


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sync()
    return time.perf_counter() - t


def measure(name: str, device: str, batch: int, size: int, rounds: int, drop_rate: float) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, pretrained=False)
    plain = rramfx.prepare(model, rramfx.Policy(drop_rate=0.0)).to(device).train()
    dropconnect = rramfx.prepare(model, rramfx.Policy(drop_rate=drop_rate)).to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opts = {m: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m in (plain, dropconnect)}
    for m in (plain, dropconnect):  # warm-up
        for _ in range(3):
            step_time(m, x, y, opts[m])
    times = {plain: [], dropconnect: []}
    for _ in range(rounds):
        for m in (plain, dropconnect):
            times[m].append(step_time(m, x, y, opts[m]))
    t_plain, t_dc = statistics.median(times[plain]), statistics.median(times[dropconnect])
    rram = sum(d == "rram" for d in rramfx.placement(dropconnect).values())
    return {"model": name, "rram_layers": rram, "plain_ms": 1e3 * t_plain, "dropconnect_ms": 1e3 * t_dc,
            "ratio": t_dc / t_plain}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="resnet18,mobilenetv2_100")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--drop-rate", type=float, default=0.2)
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(torch.get_num_threads())
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev}; batch {args.batch}, {args.size}x{args.size} inputs, drop rate {args.drop_rate}, "
          f"median of {args.rounds} interleaved steps; torch {torch.__version__}")
    print(f"{'model':18s} {'RRAM layers':>11s} {'plain ms':>9s} {'DropConnect ms':>14s} {'ratio':>6s}")
    for name in args.models.split(","):
        r = measure(name, args.device, args.batch, args.size, args.rounds, args.drop_rate)
        print(f"{r['model']:18s} {r['rram_layers']:11d} {r['plain_ms']:9.1f} {r['dropconnect_ms']:14.1f} "
              f"{r['ratio']:6.3f}")


if __name__ == "__main__":
    main()
