"""Training-step time with ``Policy.train_faults`` (a fault pattern drawn per step and layer) against
DropConnect and against no regularisation, on one model, measured side by side in one process.

Variants, interleaved round by round so machine noise hits them alike (`dropconnect_step.interleaved`):

- plain: ``drop_rate=0`` (the denominator of every ratio);
- dropconnect: ``drop_rate=P``;
- PATTERN/ENCODING: ``train_faults`` with an independent (SA1 0.9·P + SA0 0.1·P, so it does not take the
  DropConnect path), lines (word and bit lines, about P of the cells) or clustered (rate P) pattern,
  on ``single`` or ``bit_sliced`` (8-bit weights over four 2-bit cells) cells.

    python benchmarks/train_faults.py [--model resnet20] [--batch 64] [--rounds 8] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import os

import torch
from dropconnect_step import interleaved, step_time

import rramfx
from rramfx.models.spec import create_model


def patterns(p: float) -> dict[str, dict]:
    line = 1 - (1 - p) ** 0.5  # word and bit lines at this rate: a fraction p of the cells
    return {"independent": {"kind": "independent", "sa1": 0.9 * p, "sa0": 0.1 * p},
            "lines": {"kind": "lines", "wordline": line, "bitline": line},
            "clustered": {"kind": "clustered", "rate": p}}


def policies(p: float) -> dict[str, rramfx.Policy]:
    out = {"plain": rramfx.Policy(), "dropconnect": rramfx.Policy(drop_rate=p)}
    for encoding in ("single", "bit_sliced"):
        for name, pattern in patterns(p).items():
            out[f"{name}/{encoding}"] = rramfx.Policy(train_faults={"pattern": pattern,
                                                                    "hardware": {"encoding": encoding}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rate", type=float, default=0.1, help="DropConnect rate and fault fraction P (default 0.1)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2 rounds, batch 4, 16x16: checks the script runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.batch, args.size = 2, 4, 16
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10)
    models = {k: rramfx.prepare(model, pol).train() for k, pol in policies(args.rate).items()}
    x, y = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 10, (args.batch,))
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
    print(f"{args.model}, batch {args.batch}, {args.size}x{args.size}, P = {args.rate}, CPU {args.threads} thread(s), "
          f"median of {args.rounds} interleaved steps; torch {torch.__version__}; load average "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    med = interleaved({k: (lambda k=k: step_time(models[k], x, y, opts[k])) for k in models}, args.rounds)
    print(f"{'variant':24s} {'ms/step':>8s} {'/ plain':>8s} {'/ dropconnect':>13s}")
    for k, t in med.items():
        print(f"{k:24s} {1e3 * t:8.1f} {t / med['plain']:8.3f} {t / med['dropconnect']:13.3f}")


if __name__ == "__main__":
    main()
