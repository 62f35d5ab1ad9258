"""What `SweepConfig`'s ``channels_last`` and ``precision="bf16"`` buy in `make demo`'s cells (issue 11, item 6).

The demo runs its cells on the local engine: 2 worker processes of one torch thread. This script runs
the demo's own training cell (`train_cell`: ResNet-20, batch 64, lr 0.05 cosine, DropConnect p = 0.075,
``--images`` training images x ``--epochs``) once per variant, and one evaluation cell (`evaluate_cell`
at 20% SA1, 16 chips, 4-batch BN recalibration, ``--test`` test images) of the fp32 model, on ``--workers``
processes of one thread each, so two cells always run side by side as in the demo. Each job reports its
own wall and CPU seconds; ratios are against the fp32 training of the same run.

    PYTHONPATH=. python benchmarks/demo_speed.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from typing import Any

import torch

from rramfx.data import FASHION_MNIST_DIR
from rramfx.experiment.cells import CellData, Recalibration, TrainKey, evaluate_cell, train_cell
from rramfx.experiment.grid import SweepConfig
from rramfx.models.recipe import ModelRecipe

VARIANTS = {"fp32": (False, None, False), "channels_last": (True, None, False), "bf16": (False, "bf16", False),
            "channels_last+bf16": (True, "bf16", False), "compile": (False, None, True),
            "compile+channels_last": (True, None, True)}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one variant ``job["repeat"]`` times in this process (seeds 0, 1, ...: a worker of the demo
    trains several cells, and a compiled variant compiles at its first), and evaluate the first at 20% SA1
    when ``job["evaluate"]``; wall and CPU seconds of each training."""
    torch.set_num_threads(1)
    channels_last, precision, compile = VARIANTS[job["variant"]]
    config = SweepConfig(model="resnet20", dataset="fashion-mnist", data_dir=job["data_dir"], drop_rates=(0.075,),
                         fault_rates=(0.2,), seeds=(0,), trials=16, epochs=job["epochs"], batch_size=64, lr=0.05,
                         augment=False, recal_batches=4, train_subset=job["images"], test_subset=job["test"],
                         channels_last=channels_last, precision=precision, compile=compile)
    data = CellData(config.train_settings().data)
    walls, cpus, trained = [], [], None
    for seed in range(job["repeat"]):
        key = TrainKey(ModelRecipe("resnet20", data.num_classes, data.in_chans), 0.075, seed)
        wall, cpu = time.perf_counter(), time.process_time()
        result = train_cell(key, config.train_settings(), data)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        trained = trained or result
    out = {**job, "train_wall": walls[-1], "first_wall": walls[0], "train_cpu": cpus[-1],
           "clean": trained.clean_accuracy}
    if job["evaluate"]:
        wall, cpu = time.perf_counter(), time.process_time()
        evaluate_cell(trained.gm, 0.2, config.chips(), data.test_loader, recalibration=Recalibration(4, 0),
                      recal_loader=data.recal_loader(0))
        out.update(eval_wall=time.perf_counter() - wall, eval_cpu=time.process_time() - cpu)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(FASHION_MNIST_DIR), help="Fashion-MNIST idx files")
    ap.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    ap.add_argument("--test", type=int, default=500, help="test images of the evaluation cell (default 500)")
    ap.add_argument("--workers", type=int, default=2, help="processes of one torch thread (default 2)")
    ap.add_argument("--variants", default="fp32,channels_last,bf16,channels_last+bf16",
                    help=f"comma-separated, first is the baseline; of {', '.join(VARIANTS)}")
    ap.add_argument("--repeat", type=int, default=1,
                    help="trainings per variant in one process; the table shows the last, and the first apart")
    args = ap.parse_args()
    print(f"bf16 in hardware: avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, "
          f"amx {torch.cpu._is_amx_tile_supported()}")
    jobs = [{"variant": v, "images": args.images, "epochs": args.epochs, "test": args.test,
             "data_dir": args.data_dir, "evaluate": i == 0, "repeat": args.repeat}
            for i, v in enumerate(args.variants.split(","))]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run_job, jobs)
    base = results[0]["train_wall"]
    print(f"| variant | train wall s | train CPU s | vs {results[0]['variant']} | first training wall s | "
          "fault-free acc |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['variant']} | {r['train_wall']:.1f} | {r['train_cpu']:.1f} | {base / r['train_wall']:.2f}x | "
              f"{r['first_wall']:.1f} | {100 * r['clean']:.1f} |")
    e = results[0]
    print(f"evaluation cell ({e['variant']} model, 20% SA1, 16 chips, {args.test} images, 4-batch recalibration): "
          f"{e['eval_wall']:.1f} s wall, {e['eval_cpu']:.1f} CPU s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
