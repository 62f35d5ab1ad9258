"""Export a timm ResNet-18 to annotated ONNX, split it into RRAM and host segments for deployment, and
simulate faulty chips in onnxruntime, checking every step against PyTorch.

    python examples/onnx_partition.py [--out onnx_demo] [--chips 20]

The network is untrained (nothing is downloaded), so the chips are compared by how often they agree
with the fault-free prediction, not by accuracy.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

import numpy as np
import timm
import torch

import rramfx
from rramfx.crossbar import chip_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="onnx_demo", help="folder for the ONNX files (default onnx_demo)")
    ap.add_argument("--chips", type=int, default=20, help="simulated chips (default 20)")
    args = ap.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, pretrained=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.prepare(model, rramfx.Policy(drop_rate=0.2, fault_rate=0.1)).eval()
    x = torch.randn(64, 3, 32, 32)

    # 1. The deployment graph: every node says where it runs; RRAM weights pre-scaled by 1/(1-p').
    clean = rramfx.export_onnx(gm, x[:2], out / "resnet18.onnx")
    print(rramfx.inspect_onnx(clean)["text"], "\n")

    # 2. Deployment partition: segments in run order, each a standalone ONNX model.
    plan = rramfx.partition_onnx(clean, out / "resnet18_parts")
    whole = rramfx.run_partitioned(out / "resnet18_parts", x.numpy())[0]
    healthy = copy.deepcopy(gm)
    rramfx.apply_faults(healthy, rramfx.FaultSet(
        {p: torch.zeros_like(m.weight, dtype=torch.uint8) for p, m in rramfx.crossbar_layers(gm).items()},
        rramfx.FaultModel(), None))
    with torch.no_grad():
        reference = healthy(x).numpy()
    print(f"{len(plan.segments)} segments in {out / 'resnet18_parts'}; partitioned run vs PyTorch: "
          f"max abs diff {np.abs(whole - reference).max():.2e} (output scale {np.abs(reference).max():.2e})\n")

    # 3. Chips in onnxruntime: one export with the fault codes as graph inputs, any number of chips.
    sim = rramfx.export_onnx(gm, x[:2], out / "resnet18_faults.onnx", faults="inputs")
    fm = rramfx.FaultModel(sa1=0.1, sa0=0.005)
    labels = torch.from_numpy(reference.argmax(1))  # agreement with the fault-free prediction
    start = time.perf_counter()
    result = rramfx.ort_monte_carlo(sim, (x, labels), fm, trials=args.chips, seed=0)
    print(f"onnxruntime, {args.chips} chips in {time.perf_counter() - start:.1f} s: agreement with the "
          f"fault-free prediction {result}")
    same = 0
    for i in range(args.chips):  # the same chips in PyTorch, trial by trial
        rramfx.inject_faults(gm, fm, seed=chip_seed(0, i))
        with torch.no_grad():
            same += int(np.array_equal(gm(x).argmax(1).numpy(), result.predictions[i]))
    print(f"PyTorch on the same chips: identical predictions on {same} of {args.chips} chips")


if __name__ == "__main__":
    main()
