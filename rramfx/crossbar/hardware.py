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
    "ENCODINGS",
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

#: How a weight is held in cells (see docs/crossbar.md): one cell, a G+/G- pair, or bit slices.
ENCODINGS = ("single", "differential", "bit_sliced")
_SIGNED = ("differential", "offset")
_SCALES = ("layer", "column")


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
    - ``encoding``: how a weight is held (`ENCODINGS`): ``"single"`` (one cell holds the weight: the
      paper's setting and the default; ``cells_per_weight`` only reserves room), ``"differential"`` (a
      G+/G- pair, 2 cells), ``"bit_sliced"`` (the weight quantised to ``weight_bits`` bits over cells of
      ``bits_per_cell`` bits; ``signed``: ``"offset"`` adds 2**(weight_bits-1), ``"differential"``
      holds the magnitude on a positive or a negative row of slices; ``scale``: one full scale per
      ``"layer"`` or per output ``"column"``, also read by ``"differential"``). For these two,
      `weight_cells` follows from the encoding and ``cells_per_weight`` must be 1 or equal to it.
    - ``spare_columns``: extra physical columns per array (default 0) that a fault-aware mapping may
      route a logical column to, to avoid a column with stuck cells; the cost model prices them
      (`column_overhead`).
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
    encoding: str = "single"
    weight_bits: int = 8
    bits_per_cell: int = 2
    signed: str = "offset"
    scale: str = "layer"
    spare_columns: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", array_shape(self.tile))
        for name in ("cells_per_weight", "chips", "weight_bits", "bits_per_cell"):
            positive_int(f"Hardware.{name}", getattr(self, name), CostError)
        for name, allowed in (("encoding", ENCODINGS), ("signed", _SIGNED), ("scale", _SCALES)):
            if getattr(self, name) not in allowed:
                raise CostError(f"Hardware.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.weight_bits < 2 or self.weight_bits > 24:
            raise CostError(f"Hardware.weight_bits must be in [2, 24] (a sign and at least one bit), "
                            f"got {self.weight_bits}")
        if self.bits_per_cell > 8:
            raise CostError(f"Hardware.bits_per_cell must be in [1, 8], got {self.bits_per_cell}")
        if self.encoding != "single" and self.cells_per_weight not in (1, self.weight_cells):
            raise CostError(f"Hardware.cells_per_weight is {self.cells_per_weight} but the {self.encoding} "
                            f"encoding uses {self.weight_cells} cells per weight: leave it at 1 or set it to "
                            f"{self.weight_cells}")
        spare = self.spare_columns
        if isinstance(spare, bool) or not isinstance(spare, int) or spare < 0:
            raise CostError(f"Hardware.spare_columns must be an int >= 0 (extra columns per array that a "
                            f"fault-aware mapping may route to), got {spare!r}")
        for name in ("chip_area_mm2", "rram_gops_per_mm2", "rram_gops_per_w", "host_gops", "host_power_w"):
            object.__setattr__(self, name, positive_number(f"Hardware.{name}", getattr(self, name), CostError))

    @property
    def slices(self) -> int:
        """Cells of ``bits_per_cell`` bits that hold one bit-sliced number: the ``weight_bits`` of an
        offset-encoded weight, or the ``weight_bits - 1`` magnitude bits of one side of a differential one."""
        bits = self.weight_bits if self.signed == "offset" else self.weight_bits - 1
        return -(-bits // self.bits_per_cell)

    @property
    def weight_cells(self) -> int:
        """Cells one weight occupies side by side in a row of an array: what the tiles are counted on."""
        if self.encoding == "differential":
            return 2
        if self.encoding == "bit_sliced":
            return self.slices * (2 if self.signed == "differential" else 1)
        return self.cells_per_weight

    @property
    def physical_tile(self) -> tuple[int, int]:
        """The arrays as made: ``tile`` plus ``spare_columns`` extra columns that only a fault-aware mapping
        (`rramfx.crossbar.aware.fault_aware_map`) uses; the naive mapping uses the first ``tile[1]``."""
        return self.tile[0], self.tile[1] + self.spare_columns

    @property
    def column_overhead(self) -> float:
        """Physical over logical columns per array, (C + spare) / C: what spare columns add to the cells,
        area and read energy of the RRAM part (1 without spares)."""
        return (self.tile[1] + self.spare_columns) / self.tile[1]

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
                f"{self.array} arrays{self._spares()}, {self.describe_cells()}; "
                f"host: {self.host_gops:g} GOPs/s at {self.host_power_w:g} W")

    def _spares(self) -> str:
        return f" (+{self.spare_columns} spare columns)" if self.spare_columns else ""

    def describe_cells(self) -> str:
        """How a weight is held, in a few words (``"cells per weight 1"`` for the default)."""
        if self.encoding == "single":
            return f"cells per weight {self.cells_per_weight}"
        if self.encoding == "differential":
            return f"differential pairs ({self.scale} scale)"
        return (f"bit-sliced {self.weight_bits}-bit weights over {self.weight_cells} cells of "
                f"{self.bits_per_cell} bits ({self.signed} sign, {self.scale} scale)")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): every field, ``tile`` as a list; ``spare_columns`` only when set, so
        files written without spares stay byte-identical."""
        data = {**asdict(self), "tile": list(self.tile)}
        if not self.spare_columns:
            del data["spare_columns"]
        return data

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
