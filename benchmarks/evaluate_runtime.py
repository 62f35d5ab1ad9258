"""An evaluate cell's chips in PyTorch against onnxruntime (`evaluate_cell(runtime=...)`, `rramfx evaluate
--runtime`), on the demo's model: ResNet-20 trained by the demo's cell (Fashion-MNIST, ``--images`` x 1
epoch, DropConnect 0.075), then one evaluate cell at 20% SA1 with 4-batch recalibration on ``--test``
test images, for each chip count of ``--chips``, on one thread, the runtimes alternated ``--rounds`` times.
As in the `rramfx` command, the process keeps freed memory (`keep_freed_memory`). A cell's time includes
its recalibration (both runtimes) and, for onnxruntime, its ONNX export; the
per-chip cost is the slope between the two chip counts. Per-chip accuracies are compared exactly.

    PYTHONPATH=. python benchmarks/evaluate_runtime.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rramfx.data import FASHION_MNIST_DIR
from rramfx.engines import keep_freed_memory
from rramfx.experiment.cells import CellData, Chips, Recalibration, TrainKey, evaluate_cell, train_cell
from rramfx.experiment.grid import SweepConfig
from rramfx.models.recipe import ModelRecipe

# PyTorch runs in this process on its one thread (torch.set_num_threads(1) below; a ``threads`` argument
# would move the chips to a worker process), with the allocator setting the `rramfx` command and every
# engine task use (keep_freed_memory); onnxruntime is given its one intra-op thread.
RUNTIMES = {"torch": {"runtime": "torch"}, "torch channels-last": {"runtime": "torch", "channels_last": True},
            "onnxruntime": {"runtime": "onnxruntime", "threads": 1}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="training images (1 epoch)")
    ap.add_argument("--test", type=int, default=500, help="test images")
    ap.add_argument("--chips", default="8,32", help="two chip counts")
    ap.add_argument("--rounds", type=int, default=3, help="alternated repeats (median reported)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    config = SweepConfig(model="resnet20", dataset="fashion-mnist", data_dir=str(FASHION_MNIST_DIR),
                         drop_rates=(0.075,), fault_rates=(0.2,), seeds=(0,), epochs=1, batch_size=64, lr=0.05,
                         augment=False, recal_batches=4, train_subset=args.images, test_subset=args.test,
                         channels_last=True)
    data = CellData(config.train_settings().data)
    key = TrainKey(ModelRecipe("resnet20", data.num_classes, data.in_chans), 0.075, 0)
    gm = train_cell(key, config.train_settings(), data).gm
    few, many = (int(c) for c in args.chips.split(","))
    seconds: dict[tuple[str, int], list[float]] = {}
    accuracies: dict[tuple[str, int], tuple[float, ...]] = {}
    for _ in range(args.rounds):
        for chips in (few, many):
            for name, options in RUNTIMES.items():
                start = time.perf_counter()
                result = evaluate_cell(gm, 0.2, Chips(chips, 0), data.test_loader,
                                       recalibration=Recalibration(4, 0), recal_loader=data.recal_loader(0), **options)
                seconds.setdefault((name, chips), []).append(time.perf_counter() - start)
                accuracies[(name, chips)] = result.accuracies
    print(f"ResNet-20 ({args.images} images x 1 epoch, p = 0.075), 20% SA1, {args.test} test images, 1 thread, "
          f"median of {args.rounds} alternated rounds")
    print(f"{'runtime':<20} | {f'cell, {few} chips':>14} | {f'cell, {many} chips':>15} | {'per chip':>9} | "
          f"{'vs torch':>8} | {'fixed':>6} | same chips")
    slope = {}
    for name in RUNTIMES:
        a, b = (statistics.median(seconds[(name, c)]) for c in (few, many))
        slope[name] = (b - a) / (many - few)
        same = accuracies[(name, many)] == accuracies[("torch", many)]
        print(f"{name:<20} | {a:12.2f} s | {b:13.2f} s | {1000 * slope[name]:6.0f} ms | "
              f"{slope['torch'] / slope[name]:7.2f}x | {a - few * slope[name]:4.1f} s | {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
