"""`export_on_chip`: the deployment graph of a model on one tested chip, its read weights baked in.

`export_onnx` writes a clean graph (or one with fault codes); a deployment engineer who has tested a chip
(`rramfx.Chip`) wants the graph that computes what *that* chip computes: every RRAM weight replaced by
the weight its cells read, through the chip's encoding and the chosen mapping (naive or fault-aware),
times 1/(1-p'). The read weights are the ones PyTorch computes on that chip (`CrossbarLayer`'s
`effective_weight`), so onnxruntime and `rramfx.evaluate_on_chip` agree.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import fx

from rramfx.checks import writable_file
from rramfx.crossbar.chip import apply_chip_fault_rate, apply_faults, chip_fault_rate, chip_faults, crossbar_layers
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.mapping import AwareMap
from rramfx.files import write_atomic
from rramfx.onnx.chip_sessions import bake_read_weights
from rramfx.onnx.export import export_onnx

__all__ = ["export_on_chip"]


def export_on_chip(gm: fx.GraphModule, example_inputs: Any, chip: Chip, path: str | Path, *,
                   mapping: AwareMap | str | None = None, fault_rate: float | str | None = None,
                   opset: int | None = None,
                   class_names: Sequence[str] | None = None,
                   preprocessing: dict[str, Any] | None = None) -> Path:
    """Write ``gm`` as ONNX to ``path`` with the weights ``chip``'s crossbars read baked in.

    ``mapping``: None or ``"naive"`` (layers on the chip's arrays in module order), ``"aware"``
    (`rramfx.crossbar.aware.fault_aware_map`), or such a mapping made before. The graph is annotated
    with the chip's array size and encoding; it has no fault nodes (``rramfx.fault_mode`` is
    ``read_weights``). A model needing more arrays than the chip has raises `rramfx.FaultError` saying
    how many, before anything is exported; ``gm`` is left as it was. ``fault_rate`` is the p' of the
    1/(1-p') scale as in `rramfx.evaluate_on_chip`: None keeps the model's, a number sets every layer's,
    ``"measured"`` gives each layer the weight magnitude the chip takes from it (for a fault-aware mapping)."""
    out = writable_file("export_on_chip path", path)
    p_prime = chip_fault_rate("export_on_chip", fault_rate)
    faults = chip_faults(gm, chip, mapping)  # checks the chip and the array count first
    work = copy.deepcopy(gm).eval()
    apply_faults(work, faults)
    apply_chip_fault_rate(work, p_prime)
    with torch.no_grad():
        weights = {p: layer.effective_weight().detach() for p, layer in crossbar_layers(work).items()}
    with tempfile.TemporaryDirectory() as tmp:
        clean = export_onnx(gm, example_inputs, Path(tmp) / "clean.onnx", opset=opset, hardware=chip.hardware,
                            class_names=class_names, preprocessing=preprocessing)
        model = bake_read_weights(clean, weights)
    onnx.checker.check_model(model, full_check=True)
    return write_atomic(out, model.SerializeToString())
