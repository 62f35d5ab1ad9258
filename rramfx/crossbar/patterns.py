"""Fault patterns: how stuck cells are laid out on the physical arrays of a chip.

A pattern draws the cell codes of ``arrays`` crossbar arrays of ``rows x cols`` cells: 0 healthy,
`SA1` (stuck at the high-resistance state: the cell reads its lowest conductance) or `SA0` (stuck at the
low-resistance state: its highest conductance). The codes of array ``i`` depend only on the seed and
``i`` (every random number is taken from a block of a stream reserved for array ``i``, or hashed from the
cell's position), so a chip is reproducible and a chip of more arrays begins with the same arrays.

- `Independent`: every cell SA1 or SA0 on its own (the i.i.d. model of the VTS 2024 paper).
- `Lines`: whole word lines (rows) and bit lines (columns) fail, every cell of a failed line stuck at
  one value (a bit line wins where the two cross).
- `Clustered`: a cluster process: cells become cluster centres at rate ``rate / mean_size``; a cluster
  covers the ``size`` cells nearest its centre (a disc), ``size`` geometric with mean ``mean_size``
  (capped at 8x the mean), cut at the array's edges; overlapping clusters merge, so the faulty fraction
  is a little below ``rate`` (tests/test_patterns.py bounds it).
- Every pattern's ``spread`` (default 0) makes its rates vary from array to array: array ``i``'s rates
  are multiplied by a log-normal factor of mean 1 and log-standard-deviation ``spread``.

Probabilities are resolved to 2**-16 (a cell or line is hit when a uniform 16-bit draw is below
round(p · 2**16)), as DropConnect's masks are. New patterns subclass `BasePattern` and register with
`register_pattern`, as fault models do with `rramfx.crossbar.faults.register_fault_model`.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rramfx.checks import positive_number, seed_int, unit_rate
from rramfx.crossbar.faults import SA0, SA1
from rramfx.errors import FaultError

__all__ = ["BasePattern", "Clustered", "Independent", "Lines", "draw_arrays", "pattern_from_dict",
           "register_pattern"]

_PATTERNS: dict[str, type[BasePattern]] = {}
_LEVELS = 1 << 16
#: Stream numbers, one per use, so that adding a use never shifts another's numbers.
_SPREAD, _CELLS, _LINES, _HASH = 1, 2, 3, 4


def register_pattern(cls: type[BasePattern]) -> type[BasePattern]:
    """Class decorator that makes a pattern loadable by its ``kind`` from chip files and fault sets."""
    _PATTERNS[cls.kind] = cls
    return cls


def pattern_from_dict(data: Mapping[str, Any]) -> BasePattern:
    """Rebuild a pattern saved with ``to_dict``."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _PATTERNS:
        raise FaultError(f"unknown fault pattern kind {kind!r}; known kinds: {sorted(_PATTERNS)}")
    return _PATTERNS[kind](**data)


class BasePattern(ABC):
    """Interface of a fault pattern: the codes of whole arrays, drawn from per-array random numbers."""

    kind: ClassVar[str]
    spread: float

    @abstractmethod
    def draw_codes(self, arrays: int, tile: tuple[int, int], seed: int, factor: np.ndarray) -> np.ndarray:
        """The ``uint8`` codes ``[arrays, rows, cols]``; ``factor[i]`` multiplies array ``i``'s rates."""

    @property
    @abstractmethod
    def fraction(self) -> float:
        """The expected fraction of faulty cells (without ``spread``, edges and overlaps)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with ``"kind"``, that `pattern_from_dict` reads back."""
        return {"kind": self.kind, **asdict(self)}


def draw_arrays(pattern: BasePattern, arrays: int, tile: tuple[int, int], seed: int) -> torch.Tensor:
    """The cell codes ``[arrays, rows, cols]`` (``uint8``) of a chip of ``arrays`` arrays of ``tile``,
    drawn from ``pattern`` and ``seed``."""
    if not isinstance(pattern, BasePattern):
        raise FaultError(f"pattern must be an rramfx fault pattern (Independent, Lines, Clustered), "
                         f"got {type(pattern).__name__}")
    seed = seed_int(seed)
    factor = _spread_factors(pattern.spread, arrays, seed)
    return torch.from_numpy(pattern.draw_codes(arrays, tuple(tile), seed, factor))


def _check(pattern: Any, *names: str) -> None:
    for name in names:
        object.__setattr__(pattern, name, unit_rate(f"{type(pattern).__name__}.{name}", getattr(pattern, name),
                                                    FaultError, allow_one=True))
    spread = pattern.spread
    if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not 0 <= spread <= 3:
        raise FaultError(f"{type(pattern).__name__}.spread must be a number in [0, 3], got {spread!r}")
    object.__setattr__(pattern, "spread", float(spread))


@register_pattern
@dataclass(frozen=True)
class Independent(BasePattern):
    """Each cell independently SA1 with probability ``sa1``, SA0 with ``sa0``, else healthy."""

    sa1: float = 0.0
    sa0: float = 0.0
    spread: float = 0.0
    kind: ClassVar[str] = "independent"

    def __post_init__(self) -> None:
        _check(self, "sa1", "sa0")
        if self.sa1 + self.sa0 > 1:
            raise FaultError(f"Independent.sa1 + Independent.sa0 must be at most 1, got {self.sa1 + self.sa0}")

    @property
    def fraction(self) -> float:
        return self.sa1 + self.sa0

    def draw_codes(self, arrays: int, tile: tuple[int, int], seed: int, factor: np.ndarray) -> np.ndarray:
        cells = tile[0] * tile[1]
        bits = _uint16_blocks(seed, _CELLS, arrays, cells)
        sa1 = _below(bits, _bounds(self.sa1 * factor)).view(np.uint8)
        codes = _below(bits, _bounds((self.sa1 + self.sa0) * factor)).view(np.uint8)
        np.left_shift(codes, 1, out=codes)  # 2·[u < sa1 + sa0] - [u < sa1]: SA1 1, SA0 2, healthy 0
        np.subtract(codes, sa1, out=codes)
        return codes.reshape(arrays, *tile)


@register_pattern
@dataclass(frozen=True)
class Lines(BasePattern):
    """Word lines (rows) fail with probability ``wordline``, bit lines (columns) with ``bitline``; every
    cell of a failed line is stuck, at SA0 for a fraction ``sa0_share`` of the lines, else SA1."""

    wordline: float = 0.0
    bitline: float = 0.0
    sa0_share: float = 0.0
    spread: float = 0.0
    kind: ClassVar[str] = "lines"

    def __post_init__(self) -> None:
        _check(self, "wordline", "bitline", "sa0_share")

    @property
    def fraction(self) -> float:
        return 1 - (1 - self.wordline) * (1 - self.bitline)

    def draw_codes(self, arrays: int, tile: tuple[int, int], seed: int, factor: np.ndarray) -> np.ndarray:
        rows, cols = tile
        bits = _uint16_blocks(seed, _LINES, arrays, 2 * (rows + cols))  # failure draws, then stuck values
        fail, kind = bits[:, :rows + cols], bits[:, rows + cols:]
        failed = np.concatenate([_below(fail[:, :rows], _bounds(self.wordline * factor)),
                                 _below(fail[:, rows:], _bounds(self.bitline * factor))], axis=1)
        value = np.where(_below(kind, _bounds(np.full(arrays, self.sa0_share))), SA0, SA1).astype(np.uint8)
        value *= failed
        row_value, col_value = value[:, :rows, None], value[:, None, rows:]
        return np.where(col_value > 0, col_value, row_value).astype(np.uint8)


@register_pattern
@dataclass(frozen=True)
class Clustered(BasePattern):
    """Clusters of stuck cells covering about ``rate`` of the cells, ``mean_size`` cells each on average;
    a cluster is SA0 with probability ``sa0_share``, else SA1 (see the module docstring)."""

    rate: float = 0.0
    mean_size: float = 8.0
    sa0_share: float = 0.0
    spread: float = 0.0
    kind: ClassVar[str] = "clustered"

    def __post_init__(self) -> None:
        _check(self, "rate", "sa0_share")
        size = positive_number("Clustered.mean_size", self.mean_size, FaultError)
        if size < 1:
            raise FaultError(f"Clustered.mean_size must be at least 1 cell, got {size}")
        object.__setattr__(self, "mean_size", size)

    @property
    def fraction(self) -> float:
        return self.rate

    def draw_codes(self, arrays: int, tile: tuple[int, int], seed: int, factor: np.ndarray) -> np.ndarray:
        rows, cols = tile
        codes = np.zeros((arrays, rows, cols), dtype=np.uint8)
        bits = _uint16_blocks(seed, _CELLS, arrays, rows * cols)
        where = np.flatnonzero(_below(bits, _bounds(self.rate / self.mean_size * factor)))
        if where.size == 0:
            return codes
        sizes, values = self._shapes(_hash(seed, where.astype(np.uint64)), rows * cols)
        offsets = _disc(int(sizes.max()))
        step = offsets[:, 0].astype(np.int64) * cols + offsets[:, 1]  # an offset's step in the flat index
        reach = np.maximum.accumulate(np.abs(offsets).max(1))  # how far the first t + 1 offsets reach
        flat_codes, rest = codes.reshape(-1), where % (rows * cols)
        small = sizes.max() < 1 << 16  # then a stable sort of uint16 keys is a radix sort: linear time
        order = np.argsort(sizes.astype(np.uint16) if small else sizes, kind="stable")
        bounds = np.flatnonzero(np.diff(sizes[order], prepend=0, append=sizes.max() + 1))
        for lo, hi in itertools.pairwise(bounds):  # one pass per cluster size, not per cell
            group, size = order[lo:hi], int(sizes[order[lo]])
            r, c, k = rest[group] // cols, rest[group] % cols, reach[size - 1]
            edge = (r < k) | (r >= rows - k) | (c < k) | (c >= cols - k)
            value = values[group, None]
            inner = ~edge
            flat_codes[where[group[inner], None] + step[:size]] = value[inner]
            if edge.any():  # clusters that may cross the array's edge lose the cells beyond it
                rr, cc = r[edge, None] + offsets[:size, 0], c[edge, None] + offsets[:size, 1]
                inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
                cells = where[group[edge], None] + step[:size]
                flat_codes[cells[inside]] = np.broadcast_to(value[edge], cells.shape)[inside]
        return codes

    def _shapes(self, bits: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
        """Each centre's size (geometric, mean ``mean_size``, capped) and stuck value, from 64 hashed bits."""
        size_u = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
        kind_u = (bits & np.uint64(0x7FF)).astype(np.float64) / 2048.0
        cap = min(cells, math.ceil(8 * self.mean_size))
        if self.mean_size > 1:
            sizes = 1 + np.floor(np.log1p(-size_u) / math.log1p(-1 / self.mean_size))
        else:
            sizes = np.ones(bits.shape)
        sizes = np.minimum(sizes, cap).astype(np.int64)
        values = np.where(kind_u < self.sa0_share, SA0, SA1).astype(np.uint8)
        return sizes, values


def _disc(n: int) -> np.ndarray:
    """The ``n`` (row, col) offsets nearest (0, 0), nearest first (ties in row-major order)."""
    k = math.ceil(math.sqrt(n / math.pi)) + 2
    r, c = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    r, c = r.ravel(), c.ravel()
    order = np.argsort(r * r + c * c, kind="stable")[:n]
    return np.stack([r[order], c[order]], 1).astype(np.int32)


def _stream(seed: int, use: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, use])))


def _uint16_blocks(seed: int, use: int, arrays: int, per_array: int) -> np.ndarray:
    """``[arrays, per_array]`` uniform 16-bit draws; array ``i``'s are words ``i·w .. (i+1)·w - 1`` of
    the stream (``w`` = ceil(per_array / 4) 64-bit words), so they depend only on the seed and ``i``."""
    words = -(-per_array // 4)
    raw = _stream(seed, use).bit_generator.random_raw(arrays * words)
    return raw.view(np.uint16).reshape(arrays, 4 * words)[:, :per_array]


def _bounds(rates: np.ndarray | float) -> np.ndarray:
    """Per-array 16-bit thresholds: a draw ``u`` is a hit when ``u < round(rate · 2**16)``."""
    return np.rint(np.clip(np.asarray(rates, dtype=np.float64), 0.0, 1.0) * _LEVELS).astype(np.int64)


def _below(bits: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``bits[i] < bounds[i]`` for every array ``i`` (row), compared in 16-bit integers."""
    bounds = np.broadcast_to(bounds, bits.shape[:1])
    out = np.less_equal(bits, (np.clip(bounds, 1, _LEVELS) - 1).astype(np.uint16)[:, None])
    zero = bounds <= 0
    if zero.any():
        out[zero] = False
    return out


def _spread_factors(spread: float, arrays: int, seed: int) -> np.ndarray:
    """Array ``i``'s rate factor: exp(spread·z_i - spread²/2), z_i standard normal (Box-Muller on two
    32-bit draws of array ``i``'s block), so the factors have mean 1; all ones when ``spread`` is 0."""
    if spread == 0:
        return np.ones(arrays)
    raw = _stream(seed, _SPREAD).bit_generator.random_raw(arrays)
    u1 = ((raw >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0**-32
    u2 = (raw & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    z = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    return np.exp(spread * z - spread * spread / 2)


def _hash(seed: int, index: np.ndarray) -> np.ndarray:
    """64 random bits per cell index: SplitMix64 of the index plus a key drawn from ``seed``, so a
    cell's bits depend only on the seed and its position."""
    key = np.random.SeedSequence([seed, _HASH]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):
        z = index + key + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
