"""The chips of an evaluate cell simulated in onnxruntime instead of PyTorch (``runtime="onnxruntime"``).

The cell's recalibrated copy is exported with its fault codes as graph inputs (`export_onnx`,
``faults="inputs"``) and its chips run through `ort_monte_carlo`, which computes each chip's read
weights once and feeds them to one session on onnxruntime's optimised graph. The chips are the same
(chip ``i`` from ``chip_seed(seed, i)``, the same fault model, the same 1/(1-p') scale), so the per-chip
accuracies equal PyTorch's wherever float rounding decides no answer. It pays where there are many chips
per cell: the export costs seconds once per cell, a chip then runs 1.5-1.9x faster than in PyTorch for
the demo's ResNet-20 and 1.5-2.6x for ResNet-18 and MobileNetV2 (benchmarks/README.md).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import fx

from rramfx.crossbar.chip import crossbar_layers, set_fault_rate
from rramfx.crossbar.faults import FaultModel
from rramfx.data.batches import split_batch
from rramfx.errors import ArgumentError
from rramfx.evaluation.chips import MonteCarloResult, draws_no_faults
from rramfx.graph.modules import module_device
from rramfx.onnx.export import export_onnx
from rramfx.onnx.simulate import ort_monte_carlo

#: Where an evaluate cell's chips can be simulated.
RUNTIMES = ("torch", "onnxruntime")

__all__ = ["RUNTIMES", "check_runtime", "onnxruntime_chips"]


def check_runtime(runtime: Any, *, workers: int, first: int, channels_last: bool, gm: Any) -> None:
    """`ArgumentError` naming what does not go with ``runtime`` (checked before a cell does any work):
    an unknown runtime; for onnxruntime, chip blocks on several workers or from chip ``first`` > 0 (one
    session evaluates every chip; ``threads`` sets its intra-op threads), ``channels_last`` (a PyTorch
    layout), a model on another device than the CPU or one without RRAM layers (no chip to simulate)."""
    if runtime not in RUNTIMES:
        raise ArgumentError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {runtime!r}")
    if runtime == "torch":
        return
    if workers != 1 or first != 0:
        raise ArgumentError("workers/first: onnxruntime evaluates all the chips of a cell in one session; "
                            "use workers=1 (its intra-op threads are `threads`, --threads)")
    if channels_last:
        raise ArgumentError("channels_last lays out PyTorch's tensors; onnxruntime chooses its own layout: "
                            "pass channels_last or runtime='onnxruntime', not both")
    if not isinstance(gm, fx.GraphModule):
        return  # evaluate_cell's own checks name what is wrong with it
    if module_device(gm).type != "cpu":
        raise ArgumentError(f"runtime='onnxruntime' simulates chips on the CPU; the model is on "
                            f"{module_device(gm)}: move it to the CPU (--device cpu)")
    if not crossbar_layers(gm):
        raise ArgumentError("runtime='onnxruntime': the model has no RRAM layer (see rramfx.placement), so every "
                            "chip is the plain model; evaluate it with runtime='torch'")


def onnxruntime_chips(chip_model: fx.GraphModule, test_loader: Iterable[Any], fault_model: FaultModel, trials: int,
                      seed: int, *, threads: int | None = None, progress: bool = False) -> MonteCarloResult:
    """Chips 0 .. ``trials`` - 1 of ``fault_model`` and ``seed`` for the cell's copy ``chip_model`` (changed:
    its p' is set to the SA1 rate), simulated in onnxruntime on ``threads`` intra-op threads, as the
    `MonteCarloResult` `monte_carlo` gives (``seconds`` includes the export). A fault model that draws
    no faults is evaluated once and that accuracy reported for every chip, as `monte_carlo` does."""
    start = time.perf_counter()
    set_fault_rate(chip_model, fault_model.sa1)
    example = split_batch(next(iter(test_loader)))[0][:1].cpu()
    draws_nothing = draws_no_faults(fault_model)
    with tempfile.TemporaryDirectory(prefix="rramfx-cell-") as folder:
        path = export_onnx(chip_model, example, Path(folder) / "cell.onnx", faults="inputs", fault_model=fault_model)
        result = ort_monte_carlo(path, test_loader, fault_model, 1 if draws_nothing else trials, seed,
                                 threads=threads, progress=progress)
    accuracies = result.accuracies
    if accuracies is None:
        raise ArgumentError("the test loader's batches have no labels: an evaluate cell needs (inputs, labels)")
    if draws_nothing:
        accuracies = accuracies * trials
    return MonteCarloResult(tuple(accuracies), seed, fault_model.to_dict(), float(fault_model.sa1), result.samples,
                            len(crossbar_layers(chip_model)), time.perf_counter() - start)
