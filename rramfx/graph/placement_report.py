"""Reading a prepared model's placement: the RRAM/CPU map and a human-readable table of it."""

from __future__ import annotations

from torch import fx, nn

from rramfx.crossbar.layers import CrossbarLayer
from rramfx.graph.modules import kernel_label, kernel_taps
from rramfx.graph.record import require_meta
from rramfx.tables import table_lines

__all__ = ["layer_taps", "placement", "summary"]

_NOT_PLACED = "prepare it with rramfx.prepare(model, policy) or run rramfx.passes.assign_devices"


def placement(gm: fx.GraphModule) -> dict[str, str]:
    """Module path of every weighted layer → ``"rram"`` or ``"cpu"``, in module order."""
    return dict(require_meta(gm, "placement", _NOT_PLACED))


def _type_name(layer: nn.Module) -> str:
    return (layer._rramfx_base if isinstance(layer, CrossbarLayer) else type(layer)).__name__


def summary(gm: fx.GraphModule) -> str:
    """A table of every weighted layer (layer, type, kernel, params, device) with per-device totals."""
    rows = []
    totals = {"rram": [0, 0], "cpu": [0, 0]}
    for path, device in placement(gm).items():
        layer = gm.get_submodule(path)
        params = sum(p.numel() for p in layer.parameters(recurse=False))
        rows.append((path, _type_name(layer), kernel_label(layer), f"{params:,}", device))
        totals[device][0] += 1
        totals[device][1] += params
    lines = table_lines(("layer", "type", "kernel", "params", "device"), rows, "<<<><")
    all_params = max(1, totals["rram"][1] + totals["cpu"][1])
    lines.append("")
    for device in ("rram", "cpu"):
        n, p = totals[device]
        lines.append(f"{device:4s}: {n} layers, {p:,} params ({100 * p / all_params:.1f}% of weighted-layer params)")
    return "\n".join(lines)


def layer_taps(gm: fx.GraphModule) -> dict[str, int]:
    """Kernel taps of every placed layer (1 for 1x1 convolutions and linears)."""
    return {path: kernel_taps(gm.get_submodule(path)) for path in placement(gm)}
