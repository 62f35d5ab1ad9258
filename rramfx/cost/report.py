"""`CostReport`: what one inference of a prepared model costs, layer by layer and per device, as data
(dict/JSON round trip) and as a text table. `rramfx.cost.estimate.estimate_cost` makes it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rramfx.crossbar.hardware import Hardware
from rramfx.errors import CostError, UnknownLayerError
from rramfx.policy import DEVICES
from rramfx.tables import table_lines

__all__ = ["CostReport", "CostTotals", "LayerCost", "render_table", "si"]

@dataclass(frozen=True)
class LayerCost:
    """One weighted layer's cost for one sample: ``macs`` over its ``calls`` in one forward pass, its
    unrolled weight (``groups`` matrices of ``rows x cols``), the crossbar arrays it occupies (``tiles``,
    0 on the host), and its latency (s) and energy (J) on ``device``."""

    path: str
    device: str
    kernel: str
    calls: int
    macs: int
    rows: int
    cols: int
    groups: int
    tiles: int
    latency_s: float
    energy_j: float

    @property
    def ops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class CostTotals:
    """Sums over a set of layers (one device's, or all of them)."""

    layers: int
    macs: int
    tiles: int
    latency_s: float
    energy_j: float

    @property
    def ops(self) -> int:
        return 2 * self.macs

    @classmethod
    def of(cls, layers: Iterable[LayerCost]) -> CostTotals:
        items = list(layers)
        return cls(len(items), sum(c.macs for c in items), sum(c.tiles for c in items),
                   sum(c.latency_s for c in items), sum(c.energy_j for c in items))


@dataclass(frozen=True)
class CostReport:
    """The cost of one inference (one sample) of a prepared model, layer by layer, on ``hardware``.

    ``input_shapes`` are the per-sample shapes of the example inputs the MACs were counted on.
    """

    hardware: Hardware
    input_shapes: tuple[tuple[int, ...], ...]
    layers: tuple[LayerCost, ...]

    @property
    def per_device(self) -> dict[str, CostTotals]:
        """Totals of the ``"rram"`` and the ``"cpu"`` layers (both keys always present)."""
        return {d: CostTotals.of(c for c in self.layers if c.device == d) for d in DEVICES}

    @property
    def total(self) -> CostTotals:
        """Totals over every layer: the model's latency and energy per sample."""
        return CostTotals.of(self.layers)

    @property
    def rram_cells(self) -> int:
        """Cells of the arrays the RRAM layers occupy, spare columns included (``Hardware.physical_tile``)."""
        rows, cols = self.hardware.physical_tile
        return self.per_device["rram"].tiles * rows * cols

    @property
    def spare_cells(self) -> int:
        """Of `rram_cells`, those in spare columns: the price of ``Hardware.spare_columns`` in cells."""
        return self.per_device["rram"].tiles * self.hardware.tile[0] * self.hardware.spare_columns

    def __getitem__(self, path: str) -> LayerCost:
        for c in self.layers:
            if c.path == path:
                return c
        raise UnknownLayerError(f"no weighted layer {path!r} in this report")

    def table(self) -> str:
        """A text table: one row per layer, then per-device and overall totals and the hardware."""
        return render_table(self)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready); ``totals`` is derived and ignored by `from_dict`."""
        totals = {**self.per_device, "total": self.total}
        return {
            "hardware": self.hardware.to_dict(),
            "input_shapes": [list(s) for s in self.input_shapes],
            "layers": [asdict(c) for c in self.layers],
            "totals": {k: {**asdict(t), "ops": t.ops} for k, t in totals.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostReport:
        """The inverse of `to_dict`."""
        try:
            shapes = tuple(tuple(int(d) for d in s) for s in data["input_shapes"])
            return cls(Hardware.from_dict(data["hardware"]), shapes, tuple(LayerCost(**c) for c in data["layers"]))
        except (KeyError, TypeError) as e:
            raise CostError(f"not a CostReport dict ({type(e).__name__}: {e}); make one with CostReport.to_dict") from e

    @classmethod
    def from_json(cls, text: str) -> CostReport:
        return cls.from_dict(json.loads(text))


_PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"))


def si(value: float, unit: str) -> str:
    """``value`` with an SI prefix and 4 significant digits: ``si(3.1e-8, "s") == "31 ns"``."""
    if value == 0:
        return f"0 {unit}"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    scale, prefix = _PREFIXES[-1]
    return f"{value / scale:.4g} {prefix}{unit}"


def render_table(report: CostReport) -> str:
    """Per-layer rows, then totals per device and overall, then the hardware and input shapes."""
    total = report.total
    share = total.latency_s or 1.0
    rows = []
    for c in report.layers:
        matrix = f"{c.rows}x{c.cols}" + (f" x{c.groups}" if c.groups > 1 else "")
        rows.append([c.path, c.device, c.kernel, f"{c.macs:,}", matrix, str(c.tiles) if c.device == "rram" else "-",
                     si(c.latency_s, "s"), si(c.energy_j, "J"), f"{100 * c.latency_s / share:.1f}%"])
    lines = table_lines(["layer", "device", "kernel", "MACs/sample", "matrix", "tiles", "latency", "energy", "time"],
                  rows, "<<<><>>>>")
    sums = [[name, str(t.layers), f"{t.macs:,}", f"{t.ops:,}", str(t.tiles), si(t.latency_s, "s"), si(t.energy_j, "J"),
             f"{100 * t.latency_s / share:.1f}%"]
            for name, t in [*report.per_device.items(), ("total", total)]]
    lines += ["", *table_lines(["device", "layers", "MACs/sample", "ops/sample", "tiles", "latency", "energy", "time"],
                         sums, "<>>>>>>>")]
    shapes = ", ".join("x".join(map(str, s)) for s in report.input_shapes)
    lines += ["", f"per sample of input {shapes}; {report.hardware.describe()}"]
    return "\n".join(lines)
