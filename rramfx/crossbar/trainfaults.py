"""Fault-aware training: each training step reads every RRAM layer's weight through a freshly drawn
fault pattern of the given kind and encoding, instead of DropConnect's i.i.d. dropped weights.

`Policy.train_faults <rramfx.Policy>` holds the spec: a `CellFaults` (or its ``to_dict()``, the form the
policy file keeps; ``"kind"`` and ``"hardware"`` may be left out: cell faults on ``Hardware()``).
`resolve_train_faults` turns it into a `CellFaults`; `layer_train_faults` gives a layer the callable
its forward applies in training (`rramfx.crossbar.layers.CrossbarLayer.effective_weight`).

Per forward in training, for each layer on its own: a seed is taken from torch's global generator
(so ``torch.manual_seed`` reproduces the run, and layers and steps draw independent patterns), the
arrays the layer occupies (`rramfx.crossbar.mapping.map_layer`, from array 0) are drawn from the
pattern in one vectorised call, the layer's cells are read out of them and its weight is read through
the encoding (`rramfx.crossbar.encodings.read_cells`), times 1/(1 - pattern.fraction) as DropConnect
scales by 1/(1-p). The gradient is that of the read weight: zero for a weight whose single cell is
stuck, the healthy side's for a differential pair, straight through the quantisation for bit slices.

DropConnect is the special case "independent SA1 at rate p on single cells" (no SA0, no spread):
`dropconnect_rate` recognises it and the crossbar pass gives such a layer ``drop_rate = p`` and no
train faults, so that training is bit for bit the DropConnect path (tests/test_train_faults.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rramfx.crossbar.cellfaults import CellFaults
from rramfx.crossbar.encodings import read_cells
from rramfx.crossbar.faults import fault_model_from_dict
from rramfx.crossbar.mapping import LayerMap, map_layer
from rramfx.crossbar.patterns import Independent, draw_arrays
from rramfx.errors import PolicyError, RramfxError

__all__ = ["LayerTrainFaults", "dropconnect_rate", "layer_train_faults", "resolve_train_faults"]


def resolve_train_faults(spec: CellFaults | Mapping[str, Any] | None) -> CellFaults | None:
    """The `CellFaults` a ``Policy.train_faults`` spec names (None for None); `PolicyError` naming the
    field when it is not cell faults with a pattern."""
    if spec is None or isinstance(spec, CellFaults):
        faults = spec
    elif isinstance(spec, Mapping):
        data = {"kind": "cells", **spec}
        if data["kind"] != "cells":
            raise PolicyError(f"Policy.train_faults must describe cell faults (kind 'cells', a pattern and "
                              f"optionally a hardware), got kind {data['kind']!r}")
        try:
            faults = fault_model_from_dict(data)
        except RramfxError as e:  # the hardware's or pattern's own check: say which policy field it was
            raise PolicyError(f"Policy.train_faults: {e}") from e
    else:
        raise PolicyError(f"Policy.train_faults must be an rramfx.CellFaults or its dict form, "
                          f"got {type(spec).__name__}")
    if faults is not None and faults.pattern is None:
        raise PolicyError("Policy.train_faults needs a pattern to draw from, e.g. "
                          "{'pattern': {'kind': 'lines', 'wordline': 0.01}}")
    return faults


def dropconnect_rate(faults: CellFaults | None) -> float | None:
    """p when ``faults`` is DropConnect in disguise (independent SA1 at p on single cells, no SA0, no
    spread), else None."""
    if faults is None or faults.hardware.encoding != "single":
        return None
    pattern = faults.pattern
    if isinstance(pattern, Independent) and pattern.sa0 == 0 and pattern.spread == 0:
        return pattern.sa1
    return None


class LayerTrainFaults:
    """One layer's per-step fault draw: ``self(weight)`` is the weight read through a fresh pattern."""

    def __init__(self, faults: CellFaults, layer_map: LayerMap):
        self.faults = faults
        self.layer_map = layer_map
        fraction = faults.pattern.fraction
        self.scale = 1.0 / (1.0 - fraction) if 0 < fraction < 1 else 1.0

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        hw = self.faults.hardware
        seed = int(torch.randint(0, 2**62, (1,)).item())  # torch's generator: reproducible, fresh per call
        chip = draw_arrays(self.faults.pattern, self.layer_map.arrays, hw.tile, seed)
        codes = self.layer_map.cell_codes(chip)
        if hw.encoding == "single":
            codes = codes[..., 0]
        read = read_cells(weight, codes.to(weight.device), hw)
        return read * self.scale if self.scale != 1.0 else read

    def __repr__(self) -> str:
        hw, arrays = self.faults.hardware, self.layer_map.arrays
        return f"LayerTrainFaults({self.faults.pattern!r}, {hw.encoding}, {arrays} arrays)"


def layer_train_faults(layer: nn.Module, faults: CellFaults) -> LayerTrainFaults:
    """The training-time fault draw of ``layer`` (a convolution or linear layer) under ``faults``."""
    return LayerTrainFaults(faults, map_layer(layer, faults.hardware))
