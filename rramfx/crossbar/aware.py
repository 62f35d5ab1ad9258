"""Fault-aware mapping, no retraining: place a model's tiles on a tested chip so that its stuck cells meet
small weights, or weights they read nearly right.

Free at run time on a crossbar: which physical array a tile uses, and the routing of the array's inputs
(rows) and outputs (columns). `fault_aware_map` chooses both from the chip's fault map:

1. the damage of a weight meeting a stuck cell: for every weight, cell position ``m`` of its
   ``Hardware.weight_cells`` cells and stuck code (SA1, SA0), ``|read(w) - read(w with cell m stuck)|``
   through the hardware's encoding (`rramfx.crossbar.encodings.read_cells`, the function the simulation
   uses) over the layer's ``sum |read(w)|`` (relative: a layer of small weights is no cheaper a place for
   stuck cells), laid out in the naive mapping's array coordinates;
2. tiles to arrays: ``scipy.optimize.linear_sum_assignment`` on the damage of tile ``t`` on array ``a`` with
   identity routing (a chip may have more arrays than the model needs: the best ones are used);
3. inside each tile, alternately: weight columns to physical column slots (spare columns included, see
   ``Hardware.spare_columns``) given the row routing, then rows to physical rows given the column
   routing, each an assignment on the summed damage; ``alternations`` rounds.

The damage is additive over cells: exact (up to the per-layer normalisation) for the ``single``
encoding, an approximation where one weight has several stuck cells. Every step starts from the
identity as a feasible choice, so under this damage the result is never worse than the naive mapping.
Unused cells (outside a layer's matrices) are free, as in the naive simulation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from rramfx.checks import positive_int
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.encodings import read_cells
from rramfx.crossbar.faults import SA0, SA1
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.mapping import AwareMap, CrossbarMap, LayerMap
from rramfx.errors import ArgumentTypeError

__all__ = ["fault_aware_map", "mapping_damage", "tile_damage"]


def _layer_damage(weight: torch.Tensor, hardware: Hardware) -> torch.Tensor:
    """``[2, *weight_shape, k]``: damage of cell ``m`` of each weight stuck at SA1 (index 0) or SA0 (1),
    relative to the layer's summed magnitude: a BatchNorm after the layer sees relative errors, and
    tiles moved between arrays must not push the stuck cells onto the layers of smallest weights."""
    w = weight.detach().float()
    k = hardware.weight_cells
    out = torch.zeros((2, *w.shape, k))
    healthy = read_cells(w, None, hardware)
    positions = 1 if hardware.encoding == "single" else k  # single: the other cells only reserve room
    for i, code in enumerate((SA1, SA0)):
        for m in range(positions):
            if hardware.encoding == "single":
                codes = torch.full(w.shape, code, dtype=torch.uint8)
            else:
                codes = torch.zeros((*w.shape, k), dtype=torch.uint8)
                codes[..., m] = code
            out[i, ..., m] = (read_cells(w, codes, hardware) - healthy).abs()
    return out / healthy.abs().sum().clamp(min=torch.finfo(torch.float32).tiny)


def _place(damage: torch.Tensor, layer: LayerMap, out: np.ndarray) -> None:
    """Write a layer's ``[2, *shape, k]`` damage into ``out`` (``[2, tiles, R, C]``) at its naive cells."""
    where = layer.coordinates()
    cols = layer.tile[1]
    for m in range(layer.cells):
        col = where["col"] + m
        array = where["array"] + col // cols
        out[:, array, where["row"], col % cols] = damage[..., m].numpy()


def tile_damage(layers: Mapping[str, nn.Module], base: CrossbarMap) -> np.ndarray:
    """``[2, tiles, R, C]`` float64: the damage an SA1 (index 0) or SA0 (1) cell does at each cell of the
    naive mapping ``base`` of ``layers`` (0 on unused cells)."""
    rows, cols = base.hardware.tile
    out = np.zeros((2, base.arrays, rows, cols))
    for path, layer in base.layers.items():
        _place(_layer_damage(layers[path].weight, base.hardware), layer, out)
    return out


def mapping_damage(damage: np.ndarray, chip: Chip, mapping: AwareMap | None = None) -> float:
    """Summed damage (see `tile_damage`) of the chip's stuck cells under ``mapping`` (None: naive)."""
    codes = chip.codes[:, :, :chip.hardware.tile[1]][:damage.shape[1]] if mapping is None \
        else mapping.virtual_chip(chip.codes)
    codes = codes.numpy()
    return float((damage[0] * (codes == SA1)).sum() + (damage[1] * (codes == SA0)).sum())


def _slots(hardware: Hardware) -> tuple[int, np.ndarray]:
    """Whole weight slots per array (``C // k``) and the first physical cell column of every slot a
    weight column may use: the array's own slots, then the spare columns' slots."""
    k, cols = hardware.weight_cells, hardware.tile[1]
    own = cols // k
    return own, np.concatenate([np.arange(own) * k, cols + np.arange(hardware.spare_columns // k) * k])


def _columns(slot_of: torch.Tensor, starts: torch.Tensor, k: int, cols: int) -> torch.Tensor:
    """Physical cell column of each logical cell column: slot ``j`` at ``starts[slot_of[j]]``, the cells
    after the last whole slot in place."""
    routed = (starts[slot_of][:, None] + torch.arange(k)).flatten()
    return torch.cat([routed, torch.arange(routed.numel(), cols)])


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """For each row of ``cost`` (rows <= columns) its column in a least-cost assignment."""
    return torch.from_numpy(linear_sum_assignment(cost.numpy())[1])


def _route_tile(d1: torch.Tensor, d2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, hardware: Hardware,
                alternations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and cell-column routing of one tile (damage ``d1``/``d2``: ``[R, C]``) on one array (stuck
    masks ``s1``/``s2``: ``[R, C + spare]``): the better of the alternation started on columns and the
    one started on rows (either can stall where the other does not, e.g. one stuck cell). Torch
    arithmetic on the caller's thread count (numpy's BLAS would start its own threads)."""
    k, cols = hardware.weight_cells, hardware.tile[1]
    own, starts = _slots(hardware)
    starts = torch.from_numpy(starts)
    take = starts[:, None] + torch.arange(k)  # [slots, k] physical cell columns of every slot
    w1, w2 = d1[:, :own * k].reshape(-1, own, k), d2[:, :own * k].reshape(-1, own, k)
    best = None
    for rows_first in (False, True):
        rows, slot_of = torch.arange(d1.shape[0]), torch.arange(own)
        for step in range(2 * alternations):
            if (step % 2 == 0) == rows_first:  # rows to physical rows, given the column routing
                col = _columns(slot_of, starts, k, cols)
                rows = _assign(d1 @ s1[:, col].T + d2 @ s2[:, col].T)
            else:  # weight columns to physical column slots, given the row routing
                a1, a2 = s1[rows][:, take], s2[rows][:, take]  # [R, slots, k]
                slot_of = _assign(torch.einsum("rjm,rqm->jq", w1, a1) + torch.einsum("rjm,rqm->jq", w2, a2))
        col = _columns(slot_of, starts, k, cols)
        total = float((d1 * s1[rows][:, col]).sum() + (d2 * s2[rows][:, col]).sum())
        if best is None or total < best[0]:
            best = (total, rows, col)
    return best[1], best[2]


def fault_aware_map(layers: Mapping[str, nn.Module], chip: Chip, *, alternations: int = 2) -> AwareMap:
    """A placement of ``layers`` (module path → RRAM layer, e.g. `rramfx.crossbar_layers(gm)`) on ``chip``
    that puts its stuck cells under small weights (see the module doc). Pass it to
    `rramfx.evaluate_on_chip(..., mapping=...)` or `Chip.fault_set(layers, mapping)`. A model needing
    more arrays than the chip has raises `rramfx.FaultError` saying how many."""
    if not isinstance(chip, Chip):
        raise ArgumentTypeError(f"fault_aware_map: chip must be an rramfx.Chip, got {type(chip).__name__}")
    alternations = positive_int("alternations", alternations)
    base, hardware = chip.mapping(layers), chip.hardware
    rows, cols = hardware.tile
    damage = torch.from_numpy(tile_damage(layers, base))
    s1, s2 = (chip.codes == SA1).double(), (chip.codes == SA0).double()
    cost = damage[0].flatten(1) @ s1[:, :, :cols].flatten(1).T + damage[1].flatten(1) @ s2[:, :, :cols].flatten(1).T
    arrays = _assign(cost)
    out_rows = torch.arange(rows).repeat(base.arrays, 1)
    out_cols = torch.arange(cols).repeat(base.arrays, 1)
    hit = (s1.flatten(1).amax(1) + s2.flatten(1).amax(1)) > 0
    for t, a in enumerate(arrays.tolist()):
        if hit[a] and bool(damage[:, t].any()):
            out_rows[t], out_cols[t] = _route_tile(damage[0, t], damage[1, t], s1[a], s2[a], hardware, alternations)
    return AwareMap(base, arrays.numpy().astype(np.int64), out_rows.numpy(), out_cols.numpy())
