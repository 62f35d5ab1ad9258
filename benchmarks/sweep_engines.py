"""One sweep on the three engines, side by side in one run: ``serial`` (this process, one thread),
``local`` (2 worker processes x 1 thread) and ``ray`` (a private Ray with 2 CPUs, 1 thread per task),
each from an empty folder, engine start-up included. The rows of the three are checked identical (all
but their timing fields), and the ratios printed: the targets are local >= 1.7x serial and ray within
1.3x of local (issue 11).

The sweep: ResNet-20 at width 0.5 on Fashion-MNIST, 4 drop rates x 2 training seeds = 8 train cells of
TRAIN images x 1 epoch, each evaluated at 2 fault rates on 4 chips of 200 test images (16 evaluate cells).

    python benchmarks/sweep_engines.py [--train 1000] [--engines serial,local,ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before anything imports ray

import rramfx
from rramfx.experiment.config import SweepConfig


def _timed(config: SweepConfig, engine: str) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        rows = rramfx.sweep(config, out, engine=engine, workers=1 if engine == "serial" else 2, threads=1,
                            progress=False, log=None)
        return time.perf_counter() - start, [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000, help="training images per cell (default 1000)")
    parser.add_argument("--engines", default="serial,local,ray")
    args = parser.parse_args()
    config = SweepConfig(model="resnet20", width=0.5, dataset="fashion-mnist", drop_rates=(0.0, 0.1, 0.2, 0.3),
                         fault_rates=(0.1, 0.2), seeds=(0, 1), trials=4, epochs=1, batch_size=64, lr=0.05,
                         recal_batches=2, train_subset=args.train, test_subset=200, augment=False)
    times, rows = {}, {}
    for engine in args.engines.split(","):
        times[engine], rows[engine] = _timed(config, engine)
        print(f"{engine:>7}: {times[engine]:7.1f} s for 8 train + 16 evaluate cells", flush=True)
    first = next(iter(rows.values()))
    same = all(r == first for r in rows.values())
    print(f"rows identical across {', '.join(rows)}: {same}")
    if "serial" in times and "local" in times:
        print(f"local (2 workers) vs serial: {times['serial'] / times['local']:.2f}x faster (target >= 1.7)")
    if "ray" in times and "local" in times:
        print(f"ray / local time: {times['ray'] / times['local']:.2f} (target <= 1.3)")
    if not same:
        raise SystemExit("the engines gave different rows")


if __name__ == "__main__":
    main()
