"""Chips under every encoding and fault pattern (issue 12, item 7), measured side by side in one run:

- Monte-Carlo over K chips of ResNet-20 (`rramfx.monte_carlo` with `CellFaults(hardware, pattern)`)
  against K plain evaluations of the same model on the same batches, for every encoding (single,
  differential, bit-sliced with offset and with differential sign) x pattern (independent, word and
  bit lines, clusters); target <= 1.1x;
- the time to draw one chip for torchvision's resnet18 with bit-slicing (`Chip.draw` over the arrays
  the model needs), per pattern, on one thread; target < 0.5 s.

    python benchmarks/encodings.py [--trials 8] [--samples 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rramfx
from rramfx.crossbar.patterns import Clustered, Independent, Lines
from rramfx.models.spec import create_model

ENCODINGS = {
    "single": {},
    "differential": {"encoding": "differential"},
    "bit_sliced offset": {"encoding": "bit_sliced", "weight_bits": 8, "bits_per_cell": 2},
    "bit_sliced diff.": {"encoding": "bit_sliced", "weight_bits": 8, "bits_per_cell": 2, "signed": "differential"},
}
PATTERNS = {
    "independent": Independent(sa1=0.08, sa0=0.02),
    "lines": Lines(wordline=0.05, bitline=0.05, sa0_share=0.2),
    "clusters": Clustered(rate=0.1, mean_size=8, sa0_share=0.2),
}


def _median(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _paired_ratio(plain, test, rounds: int) -> float:
    """Median over ``rounds`` of time(test) / time(plain), the two timed back to back in each round, so a
    change of load on a shared machine hits both sides of a ratio alike."""
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        plain()
        middle = time.perf_counter()
        test()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    return statistics.median(ratios)


def monte_carlo_ratios(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    gm = rramfx.prepare(create_model("resnet20", num_classes=10, in_chans=1), rramfx.Policy(),
                        example_inputs=torch.randn(2, 1, 28, 28))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
               for _ in range(args.samples // 256)]
    print(f"ResNet-20, {args.trials} chips of {args.samples} images, one thread; Monte-Carlo / "
          f"{args.trials} plain evaluations (median of {args.rounds} paired rounds)")
    print(f"{'encoding':>18} | " + " | ".join(f"{p:>11}" for p in PATTERNS))
    for name, fields in ENCODINGS.items():
        hardware = rramfx.Hardware(**fields)
        ratios = []
        for pattern in PATTERNS.values():
            model = rramfx.CellFaults(hardware, pattern)
            ratios.append(_paired_ratio(
                lambda: [rramfx.evaluate(gm, batches) for _ in range(args.trials)],
                lambda m=model: rramfx.monte_carlo(gm, batches, m, args.trials, fault_rate=0.08, progress=False),
                args.rounds))
        print(f"{name:>18} | " + " | ".join(f"{r:10.3f}x" for r in ratios), flush=True)


def draw_times(args: argparse.Namespace) -> None:
    gm = rramfx.prepare(create_model("tv:resnet18", num_classes=10), rramfx.Policy(conv_1x1="rram"),
                        example_inputs=torch.randn(2, 3, 32, 32))
    print("\ntorchvision resnet18 (conv_1x1='rram'): one chip drawn with bit-slicing, one thread (median of "
          f"{args.rounds})")
    for name in ("bit_sliced offset", "bit_sliced diff."):
        hardware = rramfx.Hardware(**ENCODINGS[name])
        arrays = rramfx.crossbar_map(gm, hardware).arrays
        cells = []
        for pname, pattern in PATTERNS.items():
            def draw(p=pattern, n=arrays, hw=hardware):
                return rramfx.Chip.draw(p, n, hw, seed=0)

            cells.append(f"{pname} {_median(draw, args.rounds):.3f} s")
        print(f"{name:>18} ({arrays} arrays): " + ", ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    monte_carlo_ratios(args)
    draw_times(args)


if __name__ == "__main__":
    main()
