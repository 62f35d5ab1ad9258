"""The hardware a prepared model is deployed on, described once and checked once.

`Hardware` is one frozen description read by every stage that needs to know the machine:

- the crossbar geometry, ``tile`` (rows x columns of one array) and ``cells_per_weight``: the
  tiling rule (`rramfx.crossbar.tiling`) turns them into the arrays a layer occupies, for the cost
  model (`rramfx.cost.estimate_cost`) and for the ONNX annotation (`rramfx.export_onnx`) alike, so
  the two cannot disagree;
- the performance figures, read by the cost model only: the RRAM chips (count, area, ISAAC's
  throughput and power efficiency) and the host CPU that runs the other layers.

One class rather than a crossbar part and a performance part: the figures are few, every caller
passes the same object, and a single ``Hardware`` round-trips through a cost report's JSON and an
ONNX file's metadata unchanged. The ONNX export ignores the performance figures (it records them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from rramfx.checks import positive_int, positive_number
from rramfx.errors import ArgumentError, ArgumentTypeError, CostError

__all__ = [
    "ISAAC_CHIP_AREA_MM2",
    "ISAAC_GOPS_PER_MM2",
    "ISAAC_GOPS_PER_W",
    "PAPER_CHIPS",
    "Hardware",
    "array_shape",
    "resolve_hardware",
]

#: ISAAC's computational efficiency (GOPs/s/mm²), power efficiency (GOPs/W) and chip area (mm²),
#: and the number of chips of the configuration the VTS 2024 paper costs its networks on.
ISAAC_GOPS_PER_MM2 = 478.95
ISAAC_GOPS_PER_W = 644.01
ISAAC_CHIP_AREA_MM2 = 85.4
PAPER_CHIPS = 64


def array_shape(value: Any, name: str = "Hardware.tile", error: type[Exception] = CostError) -> tuple[int, int]:
    """``value`` as the (rows, columns) of one crossbar array, two ints >= 1.

    The one check of an array shape: `Hardware` runs it on its ``tile`` field, and functions that
    take a ``tile=`` shorthand run it with their own argument ``name`` and ``error`` type."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise error(f"{name} must be (rows, cols) of one crossbar array, e.g. (128, 128), got {value!r}")
    items = tuple(value)
    if len(items) != 2:
        raise error(f"{name} must be (rows, cols) of one crossbar array, e.g. (128, 128), got {value!r}")
    rows, cols = (positive_int(f"{name}[{i}]", v, error) for i, v in enumerate(items))
    return rows, cols


@dataclass(frozen=True)
class Hardware:
    """The accelerator and host a model is deployed on; change it with ``dataclasses.replace``.

    - ``tile``: crossbar array (rows, columns); ``cells_per_weight``: cells that hold one weight
      (1: an 8-bit weight per cell, the paper's setting; 4 for 2-bit cells), side by side in a row.
      These two decide the tile counts of the cost report and of the ONNX annotation.
    - ``chips`` x ``chip_area_mm2`` at ``rram_gops_per_mm2`` (GOPs/s/mm²) and ``rram_gops_per_w``
      (GOPs/W): the 64-chip ISAAC of the paper by default.
    - ``host_gops`` (GOPs/s) and ``host_power_w`` (W): the CPU that runs the other layers. The default,
      768 GOPs/s at 65 W, is the fp32 peak of an 8-core desktop CPU with two 256-bit FMA units per
      core at 3 GHz (8 cores x 3e9 x 2 units x 8 lanes x 2 ops) and its power budget; peak like
      ISAAC's figures, so neither side is favoured.

    Every field is checked when the object is made; a bad one raises `rramfx.CostError` naming it.
    """

    tile: tuple[int, int] = (128, 128)
    cells_per_weight: int = 1
    chips: int = PAPER_CHIPS
    chip_area_mm2: float = ISAAC_CHIP_AREA_MM2
    rram_gops_per_mm2: float = ISAAC_GOPS_PER_MM2
    rram_gops_per_w: float = ISAAC_GOPS_PER_W
    host_gops: float = 768.0
    host_power_w: float = 65.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", array_shape(self.tile))
        for name in ("cells_per_weight", "chips"):
            positive_int(f"Hardware.{name}", getattr(self, name), CostError)
        for name in ("chip_area_mm2", "rram_gops_per_mm2", "rram_gops_per_w", "host_gops", "host_power_w"):
            object.__setattr__(self, name, positive_number(f"Hardware.{name}", getattr(self, name), CostError))

    @property
    def rram_ops_per_s(self) -> float:
        """Throughput of all chips together, operations per second."""
        return self.rram_gops_per_mm2 * 1e9 * self.chip_area_mm2 * self.chips

    @property
    def rram_ops_per_j(self) -> float:
        """RRAM operations per joule (ISAAC's power efficiency)."""
        return self.rram_gops_per_w * 1e9

    @property
    def host_ops_per_s(self) -> float:
        """Host throughput, operations per second."""
        return self.host_gops * 1e9

    @property
    def host_ops_per_j(self) -> float:
        """Host operations per joule: its throughput over its power."""
        return self.host_ops_per_s / self.host_power_w

    @property
    def array(self) -> str:
        """The array size as ``ROWSxCOLS`` (``"128x128"``), as the CLI and the ONNX metadata write it."""
        return f"{self.tile[0]}x{self.tile[1]}"

    def describe(self) -> str:
        """One line naming every figure the estimate uses."""
        return (f"RRAM: {self.chips} chips x {self.chip_area_mm2:g} mm^2 at {self.rram_gops_per_mm2:g} GOPs/s/mm^2 "
                f"({self.rram_ops_per_s / 1e12:,.0f} TOPs/s) and {self.rram_gops_per_w:g} GOPs/W, "
                f"{self.array} arrays, cells per weight {self.cells_per_weight}; "
                f"host: {self.host_gops:g} GOPs/s at {self.host_power_w:g} W")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): every field, ``tile`` as a list."""
        return {**asdict(self), "tile": list(self.tile)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hardware:
        """The inverse of `to_dict`; unknown keys are an error naming them."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CostError(f"unknown Hardware field(s) {', '.join(unknown)}; fields: {', '.join(names)}")
        return cls(**data)


def resolve_hardware(hardware: Any = None, tile: Any = None, *, where: str = "rramfx") -> Hardware:
    """The `Hardware` a public function was given: ``hardware`` itself, ``Hardware(tile=tile)`` for the
    ``tile=`` shorthand, or the default ``Hardware()`` when neither is given.

    Why here: every function that takes a hardware description (the cost model, the ONNX export)
    accepts and checks it the same way. A bad value, or both arguments at once, raises
    `rramfx.ArgumentError` (a wrong type `rramfx.ArgumentTypeError`) naming the argument and ``where``
    (the function's name)."""
    if hardware is not None and tile is not None:
        raise ArgumentError(f"{where}: give hardware= or its tile= shorthand, not both "
                            "(set the array size with Hardware(tile=...))")
    if hardware is not None:
        if not isinstance(hardware, Hardware):
            raise ArgumentTypeError(f"{where}: hardware must be an rramfx.Hardware, got {type(hardware).__name__}")
        return hardware
    if tile is not None:
        return Hardware(tile=array_shape(tile, "tile", ArgumentError))
    return Hardware()
