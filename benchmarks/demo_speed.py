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

VARIANTS = {"fp32": (False, None), "channels_last": (True, None), "bf16": (False, "bf16"),
            "channels_last+bf16": (True, "bf16")}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one variant (and evaluate it at 20% SA1 when ``job["evaluate"]``); wall and CPU seconds."""
    torch.set_num_threads(1)
    channels_last, precision = VARIANTS[job["variant"]]
    config = SweepConfig(model="resnet20", dataset="fashion-mnist", data_dir=job["data_dir"], drop_rates=(0.075,),
                         fault_rates=(0.2,), seeds=(0,), trials=16, epochs=job["epochs"], batch_size=64, lr=0.05,
                         augment=False, recal_batches=4, train_subset=job["images"], test_subset=job["test"],
                         channels_last=channels_last, precision=precision)
    data = CellData(config.train_settings().data)
    key = TrainKey(ModelRecipe("resnet20", data.num_classes, data.in_chans), 0.075, 0)
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train_cell(key, config.train_settings(), data)
    out = {**job, "train_wall": time.perf_counter() - wall, "train_cpu": time.process_time() - cpu,
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
    args = ap.parse_args()
    print(f"bf16 in hardware: avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, "
          f"amx {torch.cpu._is_amx_tile_supported()}")
    jobs = [{"variant": v, "images": args.images, "epochs": args.epochs, "test": args.test,
             "data_dir": args.data_dir, "evaluate": v == "fp32"} for v in VARIANTS]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run_job, jobs)
    base = results[0]["train_wall"]
    print("| variant | train wall s | train CPU s | vs fp32 | fault-free acc |\n| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['variant']} | {r['train_wall']:.1f} | {r['train_cpu']:.1f} | {base / r['train_wall']:.2f}x | "
              f"{100 * r['clean']:.1f} |")
    e = results[0]
    print(f"evaluation cell (fp32 model, 20% SA1, 16 chips, {args.test} images, 4-batch recalibration): "
          f"{e['eval_wall']:.1f} s wall, {e['eval_cpu']:.1f} CPU s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
