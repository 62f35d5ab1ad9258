"""How a weighted layer lies on crossbar arrays: its unrolled weight matrix, the tiles that hold it,
and the multiply-accumulates one call costs.

One place for these rules, because the ONNX annotation (`rramfx.onnx.meta`) and the cost model
(`rramfx.cost`) must agree on them: both count a layer's tiles with `Geometry.tiles_on` from the same
`rramfx.crossbar.hardware.Hardware` (array size and cells per weight), so a layer's tile count in an
exported graph is the one its cost report shows.

A convolution is programmed the way crossbar accelerators (ISAAC and the VTS 2024 paper's setting)
map it: each output channel is a column, each (input channel, kernel tap) pair a row, so one group of
a ``C_in x C_out`` convolution with a ``k x k`` kernel is a ``(C_in/groups·k·k) x (C_out/groups)``
matrix. A transposed convolution is the other way round (every input pixel drives ``C_out/groups·k·k``
outputs), and a linear layer is its ``in x out`` weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from rramfx.crossbar.hardware import Hardware
from rramfx.errors import ArgumentError, ArgumentTypeError

__all__ = ["KINDS", "Geometry", "geometry", "groups_per_tile", "layer_kind", "macs", "tiles_for", "weight_fan"]

#: The kinds of weighted layer a crossbar can hold.
KINDS = ("conv", "conv_transpose", "linear")


@dataclass(frozen=True)
class Geometry:
    """The unrolled weight of one layer: ``groups`` independent ``rows x cols`` matrices.

    ``fan`` is the number of products per output element (per *input* element for a transposed
    convolution), the factor that turns element counts into multiply-accumulates (see `macs`).
    """

    kind: str
    rows: int
    cols: int
    groups: int
    fan: int

    def tiles(self, tile: tuple[int, int], cells_per_weight: int = 1) -> int:
        """Crossbar arrays of ``tile`` (rows, columns) needed for this layer, with each weight spread
        over ``cells_per_weight`` adjacent cells of a row (bit slicing widens every column)."""
        return tiles_for(self.rows, self.cols * cells_per_weight, self.groups, tile)

    def tiles_on(self, hardware: Hardware) -> int:
        """Crossbar arrays this layer occupies on ``hardware``: its ``tile`` and the cells per weight of
        its encoding (`Hardware.weight_cells`). The count of `rramfx.crossbar.mapping.map_layer`, which
        places every tile; the cost report and the ONNX annotation read it from there."""
        return self.tiles(hardware.tile, hardware.weight_cells)


def layer_kind(layer: nn.Module) -> str:
    """``"linear"``, ``"conv_transpose"`` or ``"conv"`` for a weighted layer (subclasses included)."""
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.modules.conv._ConvNd):
        return "conv_transpose" if bool(getattr(layer, "transposed", False)) else "conv"
    raise ArgumentTypeError(f"layer must be a convolution or linear layer, got {type(layer).__name__}")


def geometry(layer: nn.Module) -> Geometry:
    """The unrolled weight matrix of a convolution (any dimension, grouped, transposed) or linear layer."""
    kind = layer_kind(layer)
    if kind == "linear":
        return Geometry(kind, layer.in_features, layer.out_features, 1, layer.in_features)
    groups = int(layer.groups)
    taps = math.prod(int(k) for k in layer.kernel_size)
    if kind == "conv_transpose":  # every input pixel drives out/groups x taps outputs
        cols = layer.out_channels // groups * taps
        return Geometry(kind, layer.in_channels // groups, cols, groups, cols)
    rows = layer.in_channels // groups * taps
    return Geometry(kind, rows, layer.out_channels // groups, groups, rows)


def tiles_for(rows: int, cols: int, groups: int, tile: tuple[int, int]) -> int:
    """Crossbar tiles of ``tile[0]`` rows x ``tile[1]`` columns that hold ``groups`` independent
    ``rows x cols`` matrices. A group that fits in a tile shares it with others along the tile's
    diagonal (depthwise and grouped convolutions); a larger one takes ceil(rows/R)·ceil(cols/C) tiles."""
    per_tile = groups_per_tile(rows, cols, tile)
    if per_tile:
        return math.ceil(groups / per_tile)
    return groups * math.ceil(rows / tile[0]) * math.ceil(cols / tile[1])


def groups_per_tile(rows: int, cols: int, tile: tuple[int, int]) -> int:
    """How many ``rows x cols`` group matrices share one array along its diagonal; 0 when one group is
    larger than an array (it is then cut into a grid of arrays of its own)."""
    tr, tc = tile
    return min(tr // rows, tc // cols) if rows <= tr and cols <= tc else 0


def macs(kind: str, fan: int, inputs: int, outputs: int) -> int:
    """Multiply-accumulates of one call of a layer with ``inputs`` input and ``outputs`` output
    elements: every output element of a convolution or linear layer sums ``fan`` products; every input
    element of a transposed convolution feeds ``fan`` outputs."""
    if kind not in KINDS:
        raise ArgumentError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return (inputs if kind == "conv_transpose" else outputs) * fan


def weight_fan(kind: str, weight_shape: Sequence[int]) -> int:
    """``fan`` (see `Geometry`) read from a convolution weight of PyTorch/ONNX layout
    ``[out, in/groups, *kernel]`` (transposed: ``[in, out/groups, *kernel]``): the product of all but
    the first dimension. Linear weights differ between frameworks; their callers pass the input size."""
    if kind == "linear":
        raise ArgumentError("kind must be a convolution kind: a linear layer's fan is its input size; read it from "
                            "the weight's layout")
    return math.prod(int(d) for d in weight_shape[1:])
