"""Reading a prepared model's placement: the RRAM/CPU map and a human-readable table of it."""

from __future__ import annotations

from torch import fx, nn

from rramfx.crossbar.layers import CrossbarLayer
from rramfx.graph.modules import host_only_layers, kernel_label, kernel_taps
from rramfx.graph.record import require_meta
from rramfx.tables import table_lines

__all__ = ["NOT_SIMULATED", "layer_taps", "placement", "summary"]

#: The device column of a layer rramfx cannot simulate (recurrent, attention): it runs on the host.
NOT_SIMULATED = "not simulated (host)"

_NOT_PLACED = "prepare it with rramfx.prepare(model, policy) or run rramfx.passes.assign_devices"


def placement(gm: fx.GraphModule) -> dict[str, str]:
    """Module path of every weighted layer → ``"rram"`` or ``"cpu"``, in module order."""
    return dict(require_meta(gm, "placement", _NOT_PLACED))


def _type_name(layer: nn.Module) -> str:
    return (layer._rramfx_base if isinstance(layer, CrossbarLayer) else type(layer)).__name__


def summary(gm: fx.GraphModule) -> str:
    """A table of every weighted layer (layer, type, kernel, params, device) with per-device totals.
    Recurrent and attention layers (`HOST_ONLY_TYPES`) are listed as ``not simulated (host)``: they
    are never on RRAM nor faulted, but their parameters count in the percentages."""
    rows = []
    totals = {"rram": [0, 0], "cpu": [0, 0], NOT_SIMULATED: [0, 0]}
    layers = [(path, gm.get_submodule(path), device) for path, device in placement(gm).items()]
    layers += [(path, layer, NOT_SIMULATED) for path, layer in host_only_layers(gm).items()]
    for path, layer, device in layers:
        own = device != NOT_SIMULATED  # a host-only layer's parameters sit in its children too
        params = sum(p.numel() for p in layer.parameters(recurse=not own))
        kernel = kernel_label(layer) if own else "-"
        rows.append((path, _type_name(layer), kernel, f"{params:,}", device))
        totals[device][0] += 1
        totals[device][1] += params
    lines = table_lines(("layer", "type", "kernel", "params", "device"), rows, "<<<><")
    all_params = max(1, sum(p for _, p in totals.values()))
    lines.append("")
    for device, (n, p) in totals.items():
        if n or device != NOT_SIMULATED:
            share = 100 * p / all_params
            lines.append(f"{device:4s}: {n} layers, {p:,} params ({share:.1f}% of weighted-layer params)")
    return "\n".join(lines)


def layer_taps(gm: fx.GraphModule) -> dict[str, int]:
    """Kernel taps of every placed layer (1 for 1x1 convolutions and linears)."""
    return {path: kernel_taps(gm.get_submodule(path)) for path in placement(gm)}
