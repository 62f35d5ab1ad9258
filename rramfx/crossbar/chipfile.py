"""`Chip`: one physical chip's fault map, measured on a tester or drawn from a fault pattern, and the
file it is kept in.

A chip is ``arrays`` crossbar arrays of ``rows x cols`` cells, each cell 0 (healthy), 1 (SA1: stuck at
the high-resistance state, it reads its lowest conductance) or 2 (SA0: stuck at the low-resistance
state, its highest conductance), and the `Hardware` it was made as (array size and how its cells hold
a weight: the encoding). A model is put on it with the naive mapping of `rramfx.crossbar.mapping` (its
RRAM layers take arrays 0, 1, 2, ... in module order) or with a fault-aware one
(`rramfx.crossbar.aware`). With ``hardware.spare_columns`` the arrays are ``rows x (cols + spare)``
(``Hardware.physical_tile``); the naive mapping uses the first ``cols`` columns.

The chip file is a checked JSON file (`rramfx.files`: written atomically, refused on load when its
SHA-256 does not match) of format ``rramfx.Chip`` version 1; docs/crossbar.md describes every field and
examples/chip.json is one. Its payload::

    {"header": {"rows": R, "cols": C, "arrays": N, "hardware": {...Hardware.to_dict()...},
                "codes": {"0": "healthy", "1": "SA1 ...", "2": "SA0 ..."},
                "measured": "how the map was obtained", "pattern": {...} or null, "seed": int or null},
     "arrays": [{"faults": [[row, col, code], ...]}, {"cells": "<base64 of zlib of R·C bytes>"}, ...]}

Each array is given either as its list of faulty cells (what a person writes; the file writer uses it
for arrays with at most 256 faults) or as all its codes, row-major, one byte each, zlib-compressed and
base64-encoded.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rramfx.checks import writable_file
from rramfx.crossbar.cellfaults import CellFaults
from rramfx.crossbar.faults import CODE_NAMES, SA0, SA1, FaultSet
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.mapping import AwareMap, CrossbarMap, map_layers
from rramfx.crossbar.patterns import BasePattern, draw_arrays, pattern_from_dict
from rramfx.errors import ArgumentError, ArgumentTypeError, FaultError, FaultSetFileError
from rramfx.files import load_checked_json, save_checked_json
from rramfx.tensor_checks import check_fault_codes

__all__ = ["CHIP_FORMAT", "CODE_MEANINGS", "Chip"]

CHIP_FORMAT = "rramfx.Chip"
CODE_MEANINGS = {"0": "healthy", "1": "SA1: stuck at the high-resistance state (lowest conductance)",
                 "2": "SA0: stuck at the low-resistance state (highest conductance)"}
_SPARSE = 256


class Chip:
    """A chip's fault map: ``codes[i, r, c]`` is the code of cell (r, c) of array ``i``.

    ``hardware`` is the chip's description (its ``tile`` must be the arrays' shape); ``measured`` says
    how the map was obtained; ``pattern`` and ``seed`` are set for a chip drawn with `draw`."""

    def __init__(self, codes: torch.Tensor | np.ndarray, hardware: Hardware | None = None, *, measured: str = "",
                 pattern: BasePattern | None = None, seed: int | None = None):
        codes = torch.as_tensor(codes)
        hardware = Hardware(tile=tuple(codes.shape[1:])) if hardware is None and codes.dim() == 3 else hardware
        if not isinstance(hardware, Hardware):
            raise ArgumentTypeError(f"Chip: hardware must be an rramfx.Hardware, got {type(hardware).__name__}")
        if codes.dim() != 3 or tuple(codes.shape[1:]) != hardware.physical_tile or codes.shape[0] < 1:
            raise ArgumentError(f"Chip: codes must be [arrays, rows, cols] with at least one array of "
                                f"{hardware.array} cells (hardware.tile) plus hardware.spare_columns "
                                f"({hardware.spare_columns}) columns, got shape {tuple(codes.shape)}")
        self.codes = check_fault_codes("Chip codes (0 healthy, 1 SA1, 2 SA0)", codes, (0, SA1, SA0)).contiguous()
        self.hardware, self.measured, self.pattern, self.seed = hardware, str(measured), pattern, seed

    @classmethod
    def draw(cls, pattern: BasePattern, arrays: int, hardware: Hardware | None = None, seed: int = 0) -> Chip:
        """A synthetic tested chip of ``arrays`` arrays of ``hardware.tile`` drawn from ``pattern``:
        the same chip `rramfx.inject_faults` draws with ``CellFaults(hardware, pattern)`` and ``seed``
        for a model that needs ``arrays`` arrays (without spare columns: with them the arrays drawn are
        ``hardware.physical_tile``, wider than the ones `CellFaults` draws)."""
        hardware = hardware or Hardware()
        if isinstance(arrays, bool) or not isinstance(arrays, int) or arrays < 1:
            raise ArgumentError(f"Chip.draw: arrays must be an int >= 1, got {arrays!r}")
        return cls(draw_arrays(pattern, arrays, hardware.physical_tile, seed), hardware,
                   measured=f"simulated: {pattern!r}, seed {seed}", pattern=pattern, seed=seed)

    @classmethod
    def healthy(cls, arrays: int, hardware: Hardware | None = None) -> Chip:
        """A chip of ``arrays`` arrays without a stuck cell: evaluating on it measures the encoding alone
        (for ``bit_sliced`` hardware, the accuracy lost to quantisation), to compare faulty chips against."""
        hardware = hardware or Hardware()
        if isinstance(arrays, bool) or not isinstance(arrays, int) or arrays < 1:
            raise ArgumentError(f"Chip.healthy: arrays must be an int >= 1, got {arrays!r}")
        return cls(torch.zeros((arrays, *hardware.physical_tile), dtype=torch.uint8), hardware,
                   measured="healthy (no faults)")

    @property
    def arrays(self) -> int:
        return int(self.codes.shape[0])

    def counts(self) -> dict[str, int]:
        """Cells per code over the whole chip, by code name."""
        n = torch.bincount(self.codes.flatten().long(), minlength=3).tolist()
        return {CODE_NAMES[c]: int(v) for c, v in enumerate(n) if v}

    def __repr__(self) -> str:
        return f"Chip({self.arrays} arrays of {self.hardware.array}, {self.hardware.describe_cells()}, {self.counts()})"

    def mapping(self, layers: Mapping[str, nn.Module]) -> CrossbarMap:
        """The naive mapping of ``layers`` onto this chip; `FaultError` when they need more arrays than it has."""
        mapping = map_layers(layers, self.hardware)
        if mapping.arrays > self.arrays:
            per_layer = ", ".join(f"{p} {m.arrays}" for p, m in list(mapping.layers.items())[:6])
            raise FaultError(f"the model needs {mapping.arrays} arrays of {self.hardware.array} "
                             f"({self.hardware.describe_cells()}; per layer: {per_layer}"
                             f"{', ...' if len(mapping.layers) > 6 else ''}) but this chip has {self.arrays}: "
                             "use a chip with more arrays, place fewer layers on RRAM, or use larger arrays")
        return mapping

    def fault_set(self, layers: Mapping[str, nn.Module], mapping: AwareMap | None = None) -> FaultSet:
        """The codes ``layers`` (module path → RRAM layer, e.g. `rramfx.crossbar_layers(gm)`) meet on
        this chip, in each layer's logical weight coordinates, as a `FaultSet` for `rramfx.apply_faults`
        (and for ONNX export, which bakes it). ``mapping``: None for the naive mapping (spare columns
        unused), or a fault-aware one (`rramfx.crossbar.aware.fault_aware_map`) made for these layers."""
        faults = CellFaults(self.hardware, self.pattern)
        if mapping is None:
            cells = self.mapping(layers).codes(self.codes[:, :, :self.hardware.tile[1]])
        else:
            self._check_aware(layers, mapping)
            cells = mapping.codes(self.codes)
        return FaultSet(faults.layer_codes(cells), faults, self.seed)

    def _check_aware(self, layers: Mapping[str, nn.Module], mapping: AwareMap) -> None:
        if not isinstance(mapping, AwareMap):
            raise ArgumentTypeError(f"Chip.fault_set: mapping must be None or an AwareMap (what "
                                    f"fault_aware_map returns), got {type(mapping).__name__}")
        shapes = {p: m.weight_shape for p, m in mapping.base.layers.items()}
        if mapping.hardware != self.hardware or shapes != {p: tuple(m.weight.shape) for p, m in layers.items()}:
            raise FaultError("Chip.fault_set: this mapping was made for other layers or another hardware "
                             "description; make it with fault_aware_map(layers, chip) for this model and chip")
        if int(mapping.arrays.max()) >= self.arrays:
            raise FaultError(f"Chip.fault_set: the mapping uses array {int(mapping.arrays.max())} but this chip "
                             f"has {self.arrays} arrays: it was made for another chip")

    # ---- the file -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The chip file's payload (see the module docstring)."""
        rows, cols = self.hardware.physical_tile
        header = {"rows": rows, "cols": cols, "arrays": self.arrays, "hardware": self.hardware.to_dict(),
                  "codes": CODE_MEANINGS, "measured": self.measured,
                  "pattern": None if self.pattern is None else self.pattern.to_dict(), "seed": self.seed}
        return {"header": header, "arrays": [_encode(a) for a in self.codes.numpy()]}

    def save(self, path: str | Path) -> Path:
        """Write the chip file (atomically, with its checksum)."""
        return save_checked_json(writable_file("Chip.save path", path), CHIP_FORMAT, 1, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> Chip:
        """Read a chip file; a missing, damaged (checksum) or malformed one raises `FaultSetFileError`
        naming the file and what is wrong."""
        _, payload = load_checked_json(path, CHIP_FORMAT, FaultSetFileError)
        try:
            return cls.from_dict(payload)
        except (ArgumentError, KeyError, TypeError, ValueError, zlib.error) as e:
            raise FaultSetFileError(f"'{path}' is not a valid rramfx chip file: {e}") from e

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Chip:
        """The inverse of `to_dict`."""
        header = payload["header"]
        hardware = Hardware.from_dict(header["hardware"])
        rows, cols = int(header["rows"]), int(header["cols"])
        if (rows, cols) != hardware.physical_tile:
            raise FaultError(f"header rows x cols {rows}x{cols} differ from hardware.tile {hardware.array} "
                             f"plus {hardware.spare_columns} spare columns")
        arrays = payload["arrays"]
        if len(arrays) != int(header["arrays"]):
            raise FaultError(f"header says {header['arrays']} arrays, the file holds {len(arrays)}")
        codes = np.stack([_decode(a, i, rows, cols) for i, a in enumerate(arrays)])
        pattern = None if header.get("pattern") is None else pattern_from_dict(header["pattern"])
        return cls(codes, hardware, measured=header.get("measured", ""), pattern=pattern, seed=header.get("seed"))


def _encode(codes: np.ndarray) -> dict[str, Any]:
    rows, cols = np.nonzero(codes)
    if rows.size <= _SPARSE:
        return {"faults": np.stack([rows, cols, codes[rows, cols]], 1).tolist()}
    return {"cells": base64.b64encode(zlib.compress(codes.tobytes(), 6)).decode("ascii")}


def _decode(entry: Mapping[str, Any], index: int, rows: int, cols: int) -> np.ndarray:
    if set(entry) == {"cells"}:
        raw = np.frombuffer(zlib.decompress(base64.b64decode(entry["cells"], validate=True)), dtype=np.uint8)
        if raw.size != rows * cols or (raw > SA0).any():
            raise FaultError(f"array {index}: 'cells' must hold {rows * cols} codes in 0..2, got {raw.size} values")
        return raw.reshape(rows, cols)
    if set(entry) != {"faults"}:
        raise FaultError(f"array {index} must have exactly one of 'faults' or 'cells', got keys {sorted(entry)}")
    faults = np.asarray(entry["faults"], dtype=np.int64).reshape(-1, 3)
    r, c, code = faults.T
    bad = ~((r >= 0) & (r < rows) & (c >= 0) & (c < cols) & ((code == SA1) | (code == SA0)))
    if bad.any():
        item = faults[np.flatnonzero(bad)[0]].tolist()
        raise FaultError(f"array {index}: fault {item} must be [row < {rows}, col < {cols}, code 1 or 2]")
    out = np.zeros((rows, cols), dtype=np.uint8)
    out[r, c] = code
    return out
