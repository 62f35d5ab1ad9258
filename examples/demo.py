"""rramfx demo: prepare a timm ResNet-18 for an RRAM chip, look at its placement, and watch what
stuck-at faults do to its outputs on simulated chips.

Run with ``make demo``. The network is untrained (no weights are downloaded), so the figures show how
far faults move the outputs, not accuracy.
"""

from __future__ import annotations

import time

import timm
import torch

import rramfx


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


def main() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, pretrained=False).eval()
    policy = rramfx.Policy(drop_rate=0.2, fault_rate=0.1)
    start = time.perf_counter()
    gm = rramfx.prepare(model, policy, example_inputs=torch.randn(1, 3, 64, 64)).eval()
    print(f"Prepared timm resnet18 in {time.perf_counter() - start:.2f} s with {policy}\n")
    print(rramfx.summary(gm))

    x = torch.randn(64, 3, 64, 64)
    with torch.no_grad():
        clean = gm(x)
        assert torch.equal(clean, model(x)), "fault-free output must equal the original model's"
        print("\nFault-free prepared output == original output: True")
        print("\nOne chip per row; RRAM weights scaled by 1/(1-p') with p' = the chip's SA1 rate.")
        print(f"{'SA1 rate':>8}  {'seed':>4}  {'stuck cells':>11}  {'rel. output error':>17}  {'top-1 agreement':>15}")
        for sa1 in (0.05, 0.1, 0.2, 0.3):
            rramfx.set_fault_rate(gm, sa1)
            for seed in (0, 1):
                faults = rramfx.inject_faults(gm, rramfx.FaultModel(sa1=sa1), seed=seed)
                y = gm(x)
                err = ((y - clean).norm() / clean.norm()).item()
                print(f"{sa1:8.2f}  {seed:4d}  {faults.counts()['SA1']:11,}  {err:17.3f}  {agreement(y, clean):15.2f}")
        rramfx.clear_faults(gm)
        print(f"\nAfter clear_faults, output == fault-free output: {torch.equal(gm(x), clean)}")


if __name__ == "__main__":
    main()
