"""Where every weight of a prepared model lies on the chip: its layers' unrolled weights tiled onto
the physical crossbar arrays of a `Hardware` description, array by array and cell by cell.

One mapping feeds every stage that needs to know it: the cost model and the ONNX annotation count a
layer's arrays with `map_layer` (`LayerMap.arrays`), and the cell-level fault simulation reads each
weight's cells out of a chip's arrays with `CrossbarMap.codes`. The placement rule is the one of
`rramfx.crossbar.tiling`:

- a layer's weight is ``groups`` matrices of ``rows x cols`` (`rramfx.crossbar.tiling.geometry`); with
  ``k`` cells per weight (`Hardware.weight_cells`) a matrix row holds ``cols·k`` cells side by side,
  weight column ``j`` in cell columns ``j·k .. j·k+k-1``;
- a group that fits in an array shares it with other groups along the array's diagonal (group ``g`` in
  slot ``g mod n`` of array ``g div n``, ``n`` groups per array); a larger group is cut into a grid of
  ``ceil(rows/R) x ceil(cols·k/C)`` arrays of its own, row blocks outer, column blocks inner;
- layers take consecutive arrays in the model's module order, the first layer from array 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.crossbar.tiling import Geometry, geometry, groups_per_tile
from rramfx.errors import ArgumentTypeError, NotPreparedError
from rramfx.tables import table_lines

__all__ = ["AwareMap", "CrossbarMap", "LayerMap", "Tile", "crossbar_map", "fold", "map_layer", "map_layers", "unroll"]


@dataclass(frozen=True)
class Tile:
    """One piece of a layer on one array: rows ``rows[0]:rows[1]`` and cell columns ``cells[0]:cells[1]``
    of group ``group``'s unrolled matrix, at ``origin`` (row, column) of array ``array``."""

    group: int
    rows: tuple[int, int]
    cells: tuple[int, int]
    array: int
    origin: tuple[int, int]


@dataclass(frozen=True)
class LayerMap:
    """One layer's place on the chip: arrays ``first_array .. first_array + arrays - 1``, ``cells`` cells
    per weight; ``per_array`` groups share one array (0: each group has a grid of arrays)."""

    path: str
    geometry: Geometry
    weight_shape: tuple[int, ...]
    tile: tuple[int, int]
    cells: int
    first_array: int
    per_array: int

    @property
    def grid(self) -> tuple[int, int]:
        """Row blocks x column blocks of arrays one group takes ((1, 1) when groups share arrays)."""
        if self.per_array:
            return 1, 1
        return math.ceil(self.geometry.rows / self.tile[0]), math.ceil(self.geometry.cols * self.cells / self.tile[1])

    @property
    def arrays(self) -> int:
        """Arrays this layer occupies: `rramfx.crossbar.tiling.Geometry.tiles_on`'s count."""
        if self.per_array:
            return math.ceil(self.geometry.groups / self.per_array)
        nr, nc = self.grid
        return self.geometry.groups * nr * nc

    def tiles(self) -> list[Tile]:
        """Every piece of the layer on an array, group by group."""
        rows, width, (tr, tc) = self.geometry.rows, self.geometry.cols * self.cells, self.tile
        out = []
        for g in range(self.geometry.groups):
            if self.per_array:
                slot = g % self.per_array
                out.append(Tile(g, (0, rows), (0, width), self.first_array + g // self.per_array,
                                (slot * rows, slot * width)))
                continue
            nr, nc = self.grid
            for i in range(nr):
                for j in range(nc):
                    out.append(Tile(g, (i * tr, min(rows, (i + 1) * tr)), (j * tc, min(width, (j + 1) * tc)),
                                    self.first_array + (g * nr + i) * nc + j, (0, 0)))
        return out

    def coordinates(self) -> dict[str, np.ndarray]:
        """``{"array", "row", "col"}``: for every weight (arrays of the weight's shape), the array and the
        row and column of its first cell; its other cells follow in the next ``cells - 1`` columns (a
        weight may continue on the next array when ``cells`` does not divide the array's width)."""
        g, r, c = np.meshgrid(*(np.arange(n) for n in (self.geometry.groups, self.geometry.rows, self.geometry.cols)),
                              indexing="ij")
        cc = c * self.cells
        if self.per_array:
            slot, width = g % self.per_array, self.geometry.cols * self.cells
            array, row, col = g // self.per_array, slot * self.geometry.rows + r, slot * width + cc
        else:
            (nr, nc), (tr, tc) = self.grid, self.tile
            array, row, col = (g * nr + r // tr) * nc + cc // tc, r % tr, cc % tc
        return {name: fold(torch.from_numpy(np.ascontiguousarray(v)), self.geometry, self.weight_shape).numpy()
                for name, v in (("array", array + self.first_array), ("row", row), ("col", col))}

    def cell_codes(self, chip: torch.Tensor) -> torch.Tensor:
        """The codes of this layer's cells in ``chip`` (``[arrays, R, C]``): ``[*weight_shape, cells]``,
        contiguous. Where a weight's cells never straddle two arrays they move as one 2/4/8-byte word,
        in one copy straight into the weight's order."""
        geo, cells, shape = self.geometry, self.cells, self.weight_shape
        block = chip[self.first_array:self.first_array + self.arrays]
        wide = _WIDE.get(cells) if self.tile[1] % cells == 0 else None
        if wide is None:  # cells of one weight may lie on two arrays: gather cell columns, then split
            unrolled = self._gather(block, geo.cols * cells, True).reshape(geo.groups, geo.rows, geo.cols, cells)
            return fold(unrolled, geo, shape).contiguous()
        words = self._gather(block.view(wide), geo.cols, geo.kind == "conv_transpose").contiguous()
        return words.view(torch.uint8).reshape(*shape, cells)

    def _gather(self, block: torch.Tensor, width: int, transposed: bool) -> torch.Tensor:
        """The layer's ``[groups, rows, width]`` entries of ``block`` (its arrays, ``width`` entries per
        matrix row), as ``[groups, width, rows]`` unless ``transposed``: the order of the weight itself."""
        geo, (tr, tw) = self.geometry, (self.tile[0], block.shape[2])
        if self.per_array:  # slot k of every array holds groups k, k + n, k + 2n, ...
            slots = [block[:, k * geo.rows:(k + 1) * geo.rows, k * width:(k + 1) * width]
                     for k in range(self.per_array)]
            unrolled = torch.stack(slots, 1).flatten(0, 1)[:geo.groups]
            return unrolled if transposed else unrolled.transpose(1, 2)
        nr, nc = self.grid
        grid = block.reshape(geo.groups, nr, nc, tr, tw)  # array (g·nr + i)·nc + j holds row block i, column block j
        if transposed:
            return grid.permute(0, 1, 3, 2, 4).reshape(geo.groups, nr * tr, nc * tw)[:, :geo.rows, :width]
        return grid.permute(0, 2, 4, 1, 3).reshape(geo.groups, nc * tw, nr * tr)[:, :width, :geo.rows]


#: The integer type as wide as ``k`` one-byte cells: a weight's cells are copied as one word.
_WIDE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def unroll(weight: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """A weight of PyTorch layout (``geo`` its geometry) as its ``[groups, rows, cols]`` unrolled matrices,
    column ``j`` of group ``g`` being the layer's output channel ``g·cols + j`` (a view where possible)."""
    if geo.kind == "conv_transpose":
        return weight.reshape(geo.groups, geo.rows, geo.cols)
    return weight.reshape(geo.groups, geo.cols, geo.rows).transpose(1, 2)


def fold(unrolled: torch.Tensor, geo: Geometry, weight_shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of `unroll`: ``[groups, rows, cols, *extra]`` back to ``[*weight_shape, *extra]``
    (``extra``: the cells of each weight, say)."""
    extra = tuple(unrolled.shape[3:])
    if geo.kind != "conv_transpose":
        unrolled = unrolled.transpose(1, 2)
    return unrolled.reshape(*weight_shape, *extra)


@dataclass(frozen=True)
class CrossbarMap:
    """A model's RRAM layers on ``hardware``'s arrays: module path → `LayerMap`, in module order."""

    hardware: Hardware
    layers: Mapping[str, LayerMap]

    @property
    def arrays(self) -> int:
        """Arrays the whole model needs."""
        return sum(m.arrays for m in self.layers.values())

    def codes(self, chip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Module path → the codes of that layer's cells in ``chip`` (``[arrays, R, C]`` uint8), shaped
        ``[*weight_shape, cells]``; a chip with fewer arrays than the model needs is for `Chip` to refuse."""
        return {path: m.cell_codes(chip) for path, m in self.layers.items()}

    def table(self) -> str:
        """One line per layer: its unrolled matrix, cells per weight and the arrays it takes."""
        rows = [(p, f"{m.geometry.groups}x{m.geometry.rows}x{m.geometry.cols}", m.cells, m.arrays,
                 f"{m.first_array}-{m.first_array + m.arrays - 1}") for p, m in self.layers.items()]
        head = ("layer", "groups x rows x cols", "cells/weight", "arrays", "array ids")
        lines = table_lines(head, rows, "<>>>>")
        return "\n".join([*lines, f"{self.arrays} arrays of {self.hardware.array} ({self.hardware.describe_cells()})"])

    def __str__(self) -> str:
        return self.table()


@dataclass(frozen=True, eq=False)
class AwareMap:
    """A fault-aware placement of ``base``'s tiles (what `rramfx.crossbar.aware.fault_aware_map` returns):
    tile ``t`` of the naive mapping (its array ``t``) sits on physical array ``arrays[t]``, its logical row
    ``r`` on physical row ``rows[t, r]`` and its logical cell column ``c`` on physical cell column
    ``cols[t, c]`` (which may be a spare column, ``>= tile[1]``). Rows and columns are routed at the
    array's inputs and outputs, so the layer computes the same function on a healthy chip."""

    base: CrossbarMap
    arrays: np.ndarray
    rows: np.ndarray
    cols: np.ndarray

    @property
    def hardware(self) -> Hardware:
        return self.base.hardware

    def virtual_chip(self, chip: torch.Tensor) -> torch.Tensor:
        """The codes ``[tiles, R, C]`` each tile's logical cells meet on ``chip`` (``[arrays, R, C + spare]``):
        the chip as the naive mapping would have to see it for this placement."""
        block = chip[torch.as_tensor(self.arrays, dtype=torch.long)]
        rows = torch.as_tensor(self.rows, dtype=torch.long)[:, :, None].expand(-1, -1, block.shape[2])
        block = torch.gather(block, 1, rows)
        cols = torch.as_tensor(self.cols, dtype=torch.long)[:, None, :].expand(-1, block.shape[1], -1)
        return torch.gather(block, 2, cols)

    def codes(self, chip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Module path → that layer's cell codes in its own (logical) weight coordinates, as
        `CrossbarMap.codes` gives them for the naive mapping."""
        return self.base.codes(self.virtual_chip(chip))

    def moved(self) -> dict[str, int]:
        """How much differs from the naive mapping: tiles on another array, rows and columns rerouted,
        cell columns on spare columns."""
        tiles = len(self.arrays)
        ident_r, ident_c = np.arange(self.rows.shape[1]), np.arange(self.cols.shape[1])
        return {"tiles_moved": int((self.arrays != np.arange(tiles)).sum()),
                "rows_rerouted": int((self.rows != ident_r).sum()), "cols_rerouted": int((self.cols != ident_c).sum()),
                "spare_cols_used": int((self.cols >= self.hardware.tile[1]).sum())}


def map_layer(layer: nn.Module, hardware: Hardware, path: str = "", first_array: int = 0) -> LayerMap:
    """One weighted layer's place on ``hardware``'s arrays, starting at array ``first_array``."""
    geo = geometry(layer)
    cells = hardware.weight_cells
    per_array = groups_per_tile(geo.rows, geo.cols * cells, hardware.tile)
    return LayerMap(path, geo, tuple(layer.weight.shape), hardware.tile, cells, first_array, per_array)


def map_layers(layers: Mapping[str, nn.Module], hardware: Hardware) -> CrossbarMap:
    """The layers (module path → layer, in this order) on consecutive arrays of ``hardware``."""
    out, first = {}, 0
    for path, layer in layers.items():
        out[path] = map_layer(layer, hardware, path, first)
        first += out[path].arrays
    return CrossbarMap(hardware, out)


def crossbar_map(gm: fx.GraphModule, hardware: Hardware | None = None) -> CrossbarMap:
    """Where each RRAM layer of a prepared model lies on ``hardware``'s arrays (default ``Hardware()``):
    print it for a per-layer table; ``result.layers[path].tiles()`` and ``.coordinates()`` give every
    tile and every weight's array and cell."""
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(f"crossbar_map: gm must be a prepared torch.fx.GraphModule (what rramfx.prepare "
                               f"returns), got {type(gm).__name__}")
    if hardware is not None and not isinstance(hardware, Hardware):
        raise ArgumentTypeError(f"crossbar_map: hardware must be an rramfx.Hardware, got {type(hardware).__name__}")
    layers = {p: m for p, m in gm.named_modules() if isinstance(m, CrossbarLayer)}
    return map_layers(layers, hardware or Hardware())
