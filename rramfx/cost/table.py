"""Text rendering of a `rramfx.cost.CostReport` (kept apart so that cost.py stays about the model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rramfx.tables import table_lines

__all__ = ["render_table", "si"]

if TYPE_CHECKING:
    from rramfx.cost.estimate import CostReport

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
