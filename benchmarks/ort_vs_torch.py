"""onnxruntime against PyTorch CPU evaluation of the same prepared model, side by side in one run.

Two settings per model, each timed interleaved round by round (machine noise hits both alike), with
the same number of threads on both sides; the ratio is PyTorch's median over onnxruntime's:

- ``clean``: the clean graph (``faults=None, prescale=False``) against the prepared model in eval mode
  without faults: plain inference, the same computation on both sides;
- ``chip``: the ``faults="inputs"`` graph fed one chip's codes against the prepared model with that
  chip applied (both apply the codes to the RRAM weights on every forward pass).

- ``monte_carlo``: ``rramfx.ort_monte_carlo`` against ``rramfx.monte_carlo`` over the same chips and
  batches (both corrupt the weights once per chip); the time is per chip.

The outputs (and the Monte-Carlo accuracies, chip by chip) are checked to agree before timing.

    python benchmarks/ort_vs_torch.py [--models resnet18,mobilenetv2_100] [--batch 32] [--size 32]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch

import rramfx
from rramfx.onnx import export_onnx, onnx_fault_inputs


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(name: str, batch: int, size: int, rounds: int, threads: int, workdir: Path) -> list[dict]:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = timm.create_model(name, num_classes=10, pretrained=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.prepare(model, rramfx.Policy(drop_rate=0.2, fault_rate=0.1)).eval()
    x = torch.randn(batch, 3, size, size)
    fm = rramfx.FaultModel(sa1=0.1, sa0=0.01)
    chip = rramfx.inject_faults(copy.deepcopy(gm), fm, seed=0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    rows = []
    for setting, faults, chip_set in (("clean", None, None), ("chip", "inputs", chip)):
        path = export_onnx(gm, x[:2], workdir / f"{name}_{setting}.onnx", faults=faults, prescale=False)
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        if faults == "inputs":
            feed.update(onnx_fault_inputs(chip_set))
        torch_model = copy.deepcopy(gm)
        if chip_set is not None:
            rramfx.apply_faults(torch_model, chip_set)

        def run_torch(m=torch_model):
            with torch.no_grad():
                return m(x)

        def run_ort(s=session, f=feed):
            return s.run(None, f)[0]

        want, got = run_torch().numpy(), run_ort()
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        assert rel < 1e-4, f"{name} {setting}: onnxruntime and PyTorch disagree ({rel:.1e})"
        for _ in range(3):  # warm-up
            run_torch()
            run_ort()
        t_torch, t_ort = [], []
        for _ in range(rounds):
            t_torch.append(_time(run_torch))
            t_ort.append(_time(run_ort))
        mt, mo = statistics.median(t_torch), statistics.median(t_ort)
        rows.append({"model": name, "setting": setting, "batch": batch, "torch_ms": 1e3 * mt, "ort_ms": 1e3 * mo,
                     "ratio": mt / mo, "max_rel_diff": rel})
        if faults == "inputs":
            rows.append(_monte_carlo(name, gm, path, fm, x, chips=4, rounds=max(2, rounds // 5)))
    return rows


def _monte_carlo(name, gm, path, fm, x, chips, rounds) -> dict:
    with torch.no_grad():
        labels = gm(x).argmax(1)
    loader = [(x, labels)] * 4  # four batches per chip
    t_torch, t_ort = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        torch_side = rramfx.monte_carlo(gm, loader, fm, trials=chips, seed=0)
        t_torch.append((time.perf_counter() - t) / chips)
        t = time.perf_counter()
        ort_side = rramfx.ort_monte_carlo(path, loader, fm, trials=chips, seed=0, threads=1)
        t_ort.append((time.perf_counter() - t) / chips)
        assert list(torch_side.accuracies) == list(ort_side.accuracies), "the two sides saw different chips"
    mt, mo = statistics.median(t_torch), statistics.median(t_ort)
    return {"model": name, "setting": "monte_carlo", "batch": x.shape[0], "torch_ms": 1e3 * mt, "ort_ms": 1e3 * mo,
            "ratio": mt / mo, "max_rel_diff": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,mobilenetv2_100")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads on both sides (default 1: multi-threaded timings are unreliable on a busy machine)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"input {args.batch}x3x{args.size}x{args.size}, median of {args.rounds} interleaved rounds")
    print(f"{'model':18s} {'setting':11s} {'PyTorch ms':>10s} {'ORT ms':>8s} {'PyTorch/ORT':>11s} "
          f"{'max rel diff':>12s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for r in measure(name, args.batch, args.size, args.rounds, args.threads, Path(tmp)):
                print(f"{r['model']:18s} {r['setting']:11s} {r['torch_ms']:10.2f} {r['ort_ms']:8.2f} "
                      f"{r['ratio']:11.2f} {r['max_rel_diff']:12.1e}")


if __name__ == "__main__":
    main()
