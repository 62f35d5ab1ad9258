"""`estimate_cost`: crossbar tiles, latency and energy of a prepared model, layer by layer.

The model is the one the VTS 2024 paper uses for its Table II, made explicit per layer:

- Only convolutions and linear layers cost anything; one multiply-accumulate (MAC) is 2 operations.
  MACs are counted from the output shapes of one forward pass on the example inputs.
- An RRAM layer holds its unrolled weight matrix (`rramfx.crossbar.tiling`) in crossbar arrays of
  ``Hardware.tile`` cells, ``Hardware.cells_per_weight`` cells per weight (the paper: one 8-bit weight
  per cell); the ONNX export counts tiles from the same `rramfx.crossbar.hardware.Hardware`. Its
  latency and energy follow ISAAC's average efficiencies (Shafiee et al., ISCA 2016):
  ops / (478.95 GOPs/s/mm² x chip area x chips) seconds and ops / 644.01 GOPs/W joules.
  ``Hardware.spare_columns`` (for fault-aware mapping) widen every array: the RRAM energy is scaled by
  (C + spare) / C (`Hardware.column_overhead`) and `CostReport.spare_cells` counts the extra cells.
- A host (CPU) layer takes ops / host throughput seconds at the host's power.
- Layers run one after another: the model's latency and energy are the sums over its layers.

What this leaves out (ADC/DAC and peripheral costs beyond ISAAC's averages, data movement between the
crossbars and the host, BatchNorm/activations/pooling, mapping limits, pipelining) is listed in
docs/cost-model.md, with a worked example and the comparison with the paper's Table II.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import fx, nn

from rramfx.cost.report import CostReport, CostTotals, LayerCost
from rramfx.crossbar.hardware import (
    ISAAC_CHIP_AREA_MM2,
    ISAAC_GOPS_PER_MM2,
    ISAAC_GOPS_PER_W,
    PAPER_CHIPS,
    Hardware,
    resolve_hardware,
)
from rramfx.crossbar.mapping import map_layer
from rramfx.crossbar.tiling import geometry
from rramfx.errors import CostError, NotPreparedError
from rramfx.graph.mac_count import count_macs
from rramfx.graph.modules import kernel_label
from rramfx.graph.placement_report import placement
from rramfx.graph.shapes import as_args
from rramfx.policy import DEVICES

__all__ = [
    "ISAAC_CHIP_AREA_MM2",
    "ISAAC_GOPS_PER_MM2",
    "ISAAC_GOPS_PER_W",
    "PAPER_CHIPS",
    "CostReport",
    "CostTotals",
    "Hardware",
    "LayerCost",
    "estimate_cost",
]


def estimate_cost(
    gm: fx.GraphModule,
    example_inputs: Any,
    hardware: Hardware | None = None,
    *,
    all_on: str | None = None,
) -> CostReport:
    """Crossbar tiles, latency and energy of one inference of a prepared model (see the module doc).

    ``gm`` is what `rramfx.prepare` returns; each weighted layer is costed where its placement puts it,
    or on ``all_on`` (``"rram"`` or ``"cpu"``) for every layer, to ask what a different deployment
    would cost. ``example_inputs`` (a batch tensor, or a tuple of forward arguments whose first item
    is one) runs once through the model in eval mode, without gradients, to count MACs; the result is
    per sample. ``gm`` is left as it was (parameters, buffers, training flags, hooks).
    """
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(f"estimate_cost: gm must be a prepared model (the torch.fx.GraphModule that "
                               f"rramfx.prepare(model, policy) returns), got {type(gm).__name__}; prepare it first")
    try:
        placed = placement(gm)
    except NotPreparedError as e:
        raise NotPreparedError(f"estimate_cost: {e}") from e
    hw = resolve_hardware(hardware, where="estimate_cost")
    if all_on is not None and all_on not in DEVICES:
        raise CostError(f"all_on must be None (the model's placement), 'rram' or 'cpu', got {all_on!r}")
    args = as_args(example_inputs)
    first = args[0] if args else None
    if not isinstance(first, torch.Tensor) or first.dim() == 0 or first.shape[0] == 0:
        raise CostError(f"example_inputs must be a batch tensor (or a tuple of forward arguments whose first "
                        f"item is one), e.g. torch.randn(1, 3, 32, 32); got {_describe(first)}")
    batch = int(first.shape[0])
    try:
        counts = count_macs(gm, list(placed), args)
    except Exception as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise CostError(f"estimate_cost could not run the model on example_inputs ({type(e).__name__}: {reason}). "
                        "Pass inputs the model accepts, on its device (e.g. torch.randn(1, 3, 32, 32) for a "
                        "CIFAR-sized model).") from e
    idle = [p for p, (calls, _) in counts.items() if calls == 0]
    if idle:
        warnings.warn(f"estimate_cost: {len(idle)} weighted layer(s) did not run on the example inputs and "
                      f"count no MACs (their crossbar tiles still count): {', '.join(idle)}", stacklevel=2)
    layers = tuple(_layer_cost(path, gm.get_submodule(path), all_on or device, counts[path][0],
                               round(counts[path][1] / batch), hw) for path, device in placed.items())
    shapes = tuple(tuple(int(d) for d in a.shape[1:]) for a in args if isinstance(a, torch.Tensor))
    return CostReport(hw, shapes, layers)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return "nothing" if value is None else type(value).__name__


def _layer_cost(path: str, layer: nn.Module, device: str, calls: int, n_macs: int, hw: Hardware) -> LayerCost:
    geo = geometry(layer)
    ops = 2 * n_macs
    if device == "rram":
        tiles = map_layer(layer, hw, path).arrays  # the mapping the fault simulation and ONNX export use
        latency, energy = ops / hw.rram_ops_per_s, ops / hw.rram_ops_per_j
        if hw.spare_columns:  # every bit line of an array is read: spares add their share of the read energy
            energy *= hw.column_overhead
    else:
        tiles = 0
        latency, energy = ops / hw.host_ops_per_s, ops / hw.host_ops_per_j
    return LayerCost(path, device, kernel_label(layer), calls, n_macs, geo.rows, geo.cols, geo.groups, tiles,
                     latency, energy)
