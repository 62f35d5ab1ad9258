"""Per-chip cost of Monte-Carlo in onnxruntime against `rramfx.monte_carlo` in PyTorch, side by side in
one run, for each of `ort_monte_carlo`'s methods: ``read_weights`` (the default: one session on the graph
onnxruntime optimised, each chip's weights fed as inputs), ``chip_sessions`` (a session per chip with its
read weights) and ``graph`` (the fault codes applied in the graph).

Each model is prepared with ``Policy(drop_rate=0.2, fault_rate=0.1, conv_1x1="rram")`` (every
convolution on RRAM), exported once with ``faults="inputs"``, and evaluated on the same batches of
images by the four paths, interleaved round by round (machine noise hits all alike), one thread each.
The per-chip time is each result's ``seconds / trials`` (the loop over chips: drawing codes, read weights,
session or weight building, inference); onnxruntime's one-off setup of the default method (loading the
graph, learning how onnxruntime lays out its weights) is printed apart. The per-chip accuracies of all
four are asserted identical in every round.

    python benchmarks/ort_chips.py [--models tv_resnet18,resnet18,mobilenetv2_100] [--batches 4,32]
        [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import onnxruntime as ort
import timm
import torch
import torchvision

import rramfx
from rramfx.onnx.simulate import METHODS


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("tv_"):
        return getattr(torchvision.models, name[3:])(num_classes=10).eval()
    return timm.create_model(name, num_classes=10, pretrained=False).eval()


def measure(name: str, batch: int, batches: int, size: int, chips: int, rounds: int, workdir: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.prepare(_model(name), rramfx.Policy(drop_rate=0.2, fault_rate=0.1, conv_1x1="rram")).eval()
    path = workdir / f"{name}.onnx"
    if not path.exists():
        rramfx.export_onnx(gm, torch.randn(2, 3, size, size), path, faults="inputs")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch * batches, 3, size, size, generator=gen)
    with torch.no_grad():
        labels = gm(x).argmax(1)
    labels[::3] = (labels[::3] + 1) % 10  # so that accuracies differ between chips
    loader = [(x[i:i + batch], labels[i:i + batch]) for i in range(0, len(x), batch)]
    fm = rramfx.FaultModel(sa1=0.1, sa0=0.01)
    times: dict[str, list[float]] = {"torch": [], **{m: [] for m in METHODS}}
    setup: list[float] = []
    for _ in range(rounds):
        res = rramfx.monte_carlo(gm, loader, fm, trials=chips, seed=0)
        times["torch"].append(res.seconds / chips)
        for method in METHODS:
            t = time.perf_counter()
            out = rramfx.ort_monte_carlo(path, loader, fm, trials=chips, seed=0, threads=1, method=method)
            times[method].append(out.seconds / chips)
            if method == "read_weights":
                setup.append(time.perf_counter() - t - out.seconds)
            assert list(out.accuracies) == list(res.accuracies), f"{name} {method}: per-chip accuracies differ"
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {"model": name, "images": len(x), **med, "setup_ms": 1e3 * statistics.median(setup),
            **{f"ratio_{m}": med["torch"] / med[m] for m in METHODS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tv_resnet18,resnet18,mobilenetv2_100",
                    help="timm names, or tv_NAME for torchvision models")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", default="4,32", help="batches per chip, one setting per value")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--chips", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="run with rramfx.engines.keep_freed_memory() (as the rramfx command and engine workers do)")
    args = ap.parse_args()
    if args.keep_freed_memory:
        print(f"keep_freed_memory: {rramfx.engines.keep_freed_memory()}")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, 1 thread each, batches of "
          f"{args.batch}x3x{args.size}x{args.size}, {args.chips} chips, median of {args.rounds} interleaved rounds")
    print(f"{'model':16s} {'images':>6s} {'PyTorch ms':>10s} {'ORT ms':>8s} {'sessions ms':>11s} {'graph ms':>8s} "
          f"{'PyTorch/ORT':>11s} {'/sessions':>9s} {'/graph':>6s} {'ORT setup ms':>12s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for n in (int(b) for b in args.batches.split(",")):
                r = measure(name, args.batch, n, args.size, args.chips, args.rounds, Path(tmp))
                print(f"{r['model']:16s} {r['images']:6d} {r['torch']:10.1f} {r['read_weights']:8.1f} "
                      f"{r['chip_sessions']:11.1f} {r['graph']:8.1f} {r['ratio_read_weights']:11.2f} "
                      f"{r['ratio_chip_sessions']:9.2f} {r['ratio_graph']:6.2f} {r['setup_ms']:12.0f}", flush=True)


if __name__ == "__main__":
    main()
