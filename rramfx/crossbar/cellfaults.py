"""`CellFaults`: a fault model whose faults live on the cells of the chip's arrays, read through a
weight encoding. It plugs into everything that takes a fault model (`rramfx.inject_faults`,
`rramfx.monte_carlo`, `FaultSet` files) the way `rramfx.FaultModel` does.

A chip is drawn as whole arrays (`rramfx.crossbar.patterns.draw_arrays`: as many arrays of
``hardware.tile`` as the model's RRAM layers take, `rramfx.crossbar.mapping.map_layers`), and each layer
gets the codes of its own cells out of them (`CrossbarMap.codes`), so a dead word line hits every
weight in that row of that array, whatever layer and encoding it belongs to. A layer's codes have the
weight's shape for the ``single`` encoding and one more dimension, the weight's cells, otherwise; a
layer reads them with `rramfx.crossbar.encodings.read_cells`.

`FaultModel` stays the per-weight model of the VTS 2024 paper and draws exactly the chips it always
drew; ``CellFaults(Hardware(), Independent(sa1, sa0))`` has the same statistics but draws per array.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rramfx.crossbar.encodings import cells_shape, read_cells
from rramfx.crossbar.faults import BaseFaultModel, FaultModel, register_fault_model
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.mapping import map_layers
from rramfx.crossbar.patterns import BasePattern, draw_arrays, pattern_from_dict
from rramfx.errors import ArgumentTypeError, FaultError

__all__ = ["CellFaults"]

_DEFAULT = Hardware()


@register_fault_model
@dataclass(frozen=True)
class CellFaults(BaseFaultModel):
    """Faults on the cells of ``hardware``'s arrays, laid out by ``pattern`` and read through
    ``hardware.encoding``. ``pattern`` may be None for a model that only reads given codes (a measured
    chip's, see `rramfx.Chip`); drawing then raises `FaultError`."""

    hardware: Hardware = _DEFAULT
    pattern: BasePattern | None = None
    kind: ClassVar[str] = "cells"

    def __post_init__(self) -> None:
        if isinstance(self.hardware, Mapping):
            object.__setattr__(self, "hardware", Hardware.from_dict(self.hardware))
        if isinstance(self.pattern, Mapping):
            object.__setattr__(self, "pattern", pattern_from_dict(self.pattern))
        if not isinstance(self.hardware, Hardware):
            raise ArgumentTypeError(f"CellFaults.hardware must be an rramfx.Hardware, "
                                    f"got {type(self.hardware).__name__}")
        if self.pattern is not None and not isinstance(self.pattern, BasePattern):
            raise ArgumentTypeError(f"CellFaults.pattern must be a fault pattern (Independent, Lines, Clustered) "
                                    f"or None, got {type(self.pattern).__name__}")

    def codes_shape(self, weight_shape: tuple[int, ...]) -> tuple[int, ...]:
        return cells_shape(weight_shape, self.hardware)

    def draw_codes(self, layers: Mapping[str, torch.nn.Module], seed: int) -> dict[str, torch.Tensor]:
        """Draw the arrays the layers occupy and read each layer's cells out of them."""
        mapping = map_layers(layers, self.hardware)
        return self.layer_codes(mapping.codes(self.draw_chip(mapping.arrays, seed)))

    def draw_chip(self, arrays: int, seed: int) -> torch.Tensor:
        """The cell codes ``[arrays, rows, cols]`` of a chip drawn from ``pattern`` and ``seed``."""
        if self.pattern is None:
            raise FaultError("CellFaults without a pattern cannot draw chips: give it one, e.g. "
                             "CellFaults(hardware, Independent(sa1=0.1))")
        return draw_arrays(self.pattern, arrays, self.hardware.tile, seed)

    def layer_codes(self, cells: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each layer's ``[*weight_shape, cells]`` codes as this encoding keeps them (the first cell only
        for ``single``: the others only reserve room)."""
        if self.hardware.encoding == "single":
            return {p: c[..., 0].contiguous() for p, c in cells.items()}
        return {p: c.contiguous() for p, c in cells.items()}

    def sample(self, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
        raise FaultError("CellFaults draws whole chips, not one weight: use rramfx.inject_faults(gm, faults, seed) "
                         "or draw_fault_set(layers, faults, seed)")

    def corrupt(self, weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return read_cells(weight, codes, self.hardware)

    def read_weight(self, weight: torch.Tensor, codes: torch.Tensor, scale: float = 1.0, *,
                    out: torch.Tensor | None = None) -> torch.Tensor:
        if self.hardware.encoding == "single":  # FaultModel's fast read: today's numbers, bit for bit
            return FaultModel().read_weight(weight, codes, scale, out=out)
        return super().read_weight(weight, codes, scale, out=out)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hardware": self.hardware.to_dict(),
                "pattern": None if self.pattern is None else self.pattern.to_dict()}
