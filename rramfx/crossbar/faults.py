"""Fault models and fault sets: what a defective crossbar does to the weights programmed into it.

A *fault model* draws a per-weight code tensor for one layer and knows how those codes corrupt the
layer's weight. A *fault set* is one simulated chip: the codes of every RRAM layer, drawn from a seed
so that the same seed gives the same chip on any machine, device, and in the ONNX export.

New fault kinds (cell-level, differential pairs, bit slices, whole word/bit lines) subclass
`BaseFaultModel`, choose their own codes and register themselves with `register_fault_model`.
"""

from __future__ import annotations

import hashlib
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rramfx.checks import seed_int, unit_rate, writable_file
from rramfx.errors import ArgumentError, ArgumentTypeError, FaultError, FaultSetFileError
from rramfx.files import load_checked_torch, save_checked_torch
from rramfx.tensor_checks import check_fault_codes

__all__ = [
    "CODE_NAMES",
    "HEALTHY",
    "SA0",
    "SA1",
    "BaseFaultModel",
    "FaultModel",
    "FaultSet",
    "chip_seed",
    "draw_fault_set",
    "fault_model_from_dict",
    "layer_rng",
    "register_fault_model",
    "uint32_bound",
    "uint32_draws",
]

HEALTHY, SA1, SA0 = 0, 1, 2
CODE_NAMES = {HEALTHY: "healthy", SA1: "SA1", SA0: "SA0"}

_REGISTRY: dict[str, type[BaseFaultModel]] = {}


def register_fault_model(cls: type[BaseFaultModel]) -> type[BaseFaultModel]:
    """Class decorator that makes a fault model loadable by its ``kind`` name from saved fault sets."""
    _REGISTRY[cls.kind] = cls
    return cls


class BaseFaultModel(ABC):
    """Interface of a fault kind: draw codes for a weight, and corrupt a weight given its codes.

    ``corrupt`` must be written in differentiable torch ops without Python control flow on tensor
    values, so that the same function runs in training, in evaluation and inside the ONNX export.
    """

    kind: ClassVar[str]
    #: The codes this model draws and reads (None: any uint8); a FaultSet refuses others.
    code_values: ClassVar[frozenset[int] | None] = None

    @abstractmethod
    def sample(self, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
        """Draw the ``uint8`` fault codes of one layer's weight (0 means healthy)."""

    @abstractmethod
    def corrupt(self, weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The weight as the faulty crossbar reads it."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, including ``"kind"``, that `fault_model_from_dict` reads back."""

    def codes_shape(self, weight_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one layer's codes: the weight's (one code per weight), or with a trailing
        dimension of cells for a cell-level kind (`rramfx.crossbar.cellfaults.CellFaults`)."""
        return tuple(weight_shape)

    def draw_codes(self, layers: Mapping[str, torch.nn.Module], seed: int) -> dict[str, torch.Tensor]:
        """One chip's codes for ``layers`` (module path → layer): each layer drawn with `sample` from its
        own stream `layer_rng` (seed, path). Cell-level kinds draw whole arrays instead."""
        return {path: self.sample(layer.weight.shape, layer_rng(seed, path)) for path, layer in layers.items()}

    def read_weight(self, weight: torch.Tensor, codes: torch.Tensor, scale: float = 1.0, *,
                    out: torch.Tensor | None = None) -> torch.Tensor:
        """``corrupt(weight, codes) * scale`` without autograd: what a faulty layer computes with in
        evaluation. Fault kinds may override it with a faster equal computation (see `FaultModel`).
        ``out``: a tensor of the weight's shape and dtype to write into and return, so that a caller
        reading many chips reuses one buffer (a fresh one per chip costs page faults)."""
        with torch.no_grad():
            read = self.corrupt(weight, codes)
            read = read * scale if scale != 1.0 else read
            return read if out is None else out.copy_(read)


@register_fault_model
@dataclass(frozen=True)
class FaultModel(BaseFaultModel):
    """Weight-level stuck-at faults, one 8-bit weight per cell (the VTS 2024 paper's setting).

    ``sa1``: fraction of cells stuck at the high-resistance state; the weight reads 0.
    ``sa0``: fraction stuck at the low-resistance state; the weight reads the layer's largest
    magnitude, with the weight's own sign. Each cell is SA1, SA0 or healthy, independently.
    """

    sa1: float = 0.0
    sa0: float = 0.0
    kind: ClassVar[str] = "stuck_at"
    code_values: ClassVar[frozenset[int] | None] = frozenset({HEALTHY, SA1, SA0})

    def __post_init__(self) -> None:
        for name in ("sa1", "sa0"):
            rate = unit_rate(f"FaultModel.{name}", getattr(self, name), FaultError, allow_one=True)
            object.__setattr__(self, name, rate)
        if self.sa1 + self.sa0 > 1.0:
            raise FaultError(f"FaultModel.sa1 + FaultModel.sa0 must be at most 1, got {self.sa1 + self.sa0}")

    def sample(self, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
        """Draw one uint32 per cell; cell reads SA1 below `uint32_bound` of ``sa1``, SA0 below that of
        ``sa1 + sa0``, healthy above. Bit-identical to the original definition (float32 uniforms
        ``u = rng.random(shape, float32)``: SA1 where u < sa1, SA0 where sa1 <= u < sa1 + sa0) and
        advances ``rng`` alike, in integer compares and two passes fewer (a chip's seed is a contract)."""
        bits = uint32_draws(rng, math.prod(shape))
        sa1, below = uint32_bound(self.sa1), uint32_bound(self.sa1 + self.sa0)
        if below <= sa1:  # no SA0 cell: codes are 1 below the SA1 bound, 0 above
            codes = _below(bits, sa1).view(np.uint8)
        else:  # 2·[r < below] - [r < sa1]: 1 below sa1, 2 in [sa1, below), 0 above
            codes = _below(bits, below).view(np.uint8)
            np.left_shift(codes, 1, out=codes)
            np.subtract(codes, _below(bits, sa1).view(np.uint8), out=codes)
        return torch.from_numpy(codes.reshape(tuple(shape)))

    def corrupt(self, weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        stuck_high = weight.detach().abs().amax()
        sa0_value = torch.where(weight >= 0, stuck_high, -stuck_high)
        out = torch.where(codes == SA0, sa0_value, weight)
        return torch.where(codes == SA1, torch.zeros_like(weight), out)

    def read_weight(self, weight: torch.Tensor, codes: torch.Tensor, scale: float = 1.0, *,
                    out: torch.Tensor | None = None) -> torch.Tensor:
        """``corrupt(weight, codes) * scale`` for a weight on the CPU, in NumPy passes without ``where``
        (several times faster): the healthy cells as a {0, scale} factor multiplied in, SA0 cells set by
        index (they are few), max|w| as max(max, -min). Equal to the definition (a stuck-at-1 cell of a
        negative weight may read -0.0); other dtypes and devices use the definition. ``out``: as for
        `BaseFaultModel.read_weight` (written in place when it is a contiguous CPU tensor)."""
        w_t = weight.detach()
        if w_t.device.type != "cpu" or w_t.dtype not in _NUMPY_FLOATS or not _plain(w_t, codes) or not (
                out is None or (_plain(out) and out.device.type == "cpu" and out.dtype == w_t.dtype
                                and out.shape == w_t.shape and out.is_contiguous())):
            return super().read_weight(weight, codes, scale, out=out)
        w, c = w_t.numpy(), codes.numpy()
        dtype = w.dtype.type
        read = np.empty(w.shape, w.dtype) if out is None else out.numpy()
        healthy = np.subtract(c, 1)  # uint8 wraps: code - 1 > 1 for every code but SA1 (1) and SA0 (2)
        healthy = np.greater(healthy, 1, out=healthy.view(np.bool_))
        np.multiply(healthy, dtype(scale), out=read, dtype=w.dtype)
        np.multiply(w, read, out=read)
        sa0 = c == SA0
        if sa0.any():
            high = dtype(max(w.max(), -w.min())) * dtype(scale)  # as amax, then the scale
            where = np.flatnonzero(sa0)
            read.reshape(-1)[where] = np.where(w.reshape(-1)[where] >= 0, high, -high)
        return torch.from_numpy(read) if out is None else out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def fault_model_from_dict(data: Mapping[str, Any]) -> BaseFaultModel:
    """Rebuild a fault model saved with ``to_dict``."""
    if not isinstance(data, Mapping):
        raise FaultError(f"a fault model must be a dict with a 'kind', got {data!r:.80}")
    data = dict(data)
    kind = data.pop("kind", None)
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise FaultError(f"unknown fault model kind {kind!r}; known kinds: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[kind](**data)
    except TypeError as e:
        raise FaultError(f"fault model {kind!r} does not take these fields: {sorted(map(str, data))} ({e})") from None


def layer_rng(seed: int, path: str) -> np.random.Generator:
    """The random stream of one layer of one chip: depends only on the seed and the module path,
    so a chip's masks do not change when other layers are added, removed or reordered."""
    digest = hashlib.sha256(path.encode()).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *np.frombuffer(digest[:16], np.uint32)])))


class FaultSet(Mapping[str, torch.Tensor]):
    """One simulated chip: module path → ``uint8`` code tensor of the weight's shape
    (0 healthy, 1 SA1, 2 SA0 for `FaultModel`), with the fault model and seed that drew it."""

    def __init__(self, codes: Mapping[str, torch.Tensor], fault_model: BaseFaultModel, seed: int | None):
        if not isinstance(codes, Mapping) or not all(isinstance(k, str) for k in codes):
            raise ArgumentTypeError(f"FaultSet codes must map module paths (str) to code tensors, got {codes!r:.80}")
        if not isinstance(fault_model, BaseFaultModel):
            raise ArgumentTypeError(f"FaultSet fault_model must be a BaseFaultModel, got {fault_model!r:.80}")
        self._codes = {k: check_fault_codes(f"FaultSet codes of '{k}'", v, fault_model.code_values, FaultError)
                       for k, v in codes.items()}
        self.fault_model = fault_model
        self.seed = seed

    def __getitem__(self, path: str) -> torch.Tensor:
        return self._codes[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def __repr__(self) -> str:
        return f"FaultSet({len(self)} layers, {self.fault_model}, seed={self.seed}, counts={self.counts()})"

    def counts(self) -> dict[str, int]:
        """Number of cells per code over all layers, by code name."""
        total = torch.zeros(256, dtype=torch.long)
        for codes in self._codes.values():
            total += torch.bincount(codes.flatten().long(), minlength=256)
        return {CODE_NAMES.get(c, str(c)): int(n) for c, n in enumerate(total.tolist()) if n}

    def save(self, path: str | Path) -> Path:
        """Write the chip to a file (a torch archive of plain data, loadable with weights_only)."""
        path = writable_file("FaultSet.save path", path)
        return save_checked_torch(path, "rramfx.FaultSet", 2, {"fault_model": self.fault_model.to_dict(),
                                                                 "seed": self.seed, "codes": self._codes})

    @classmethod
    def load(cls, path: str | Path) -> FaultSet:
        """Read a chip written by `save`."""
        _, data = load_checked_torch(path, "rramfx.FaultSet", FaultSetFileError)
        if not isinstance(data, dict) or any(k not in data for k in ("codes", "fault_model", "seed")):
            raise FaultSetFileError(f"fault set file '{path}' lacks its codes, fault_model or seed; write it again")
        try:
            return cls(data["codes"], fault_model_from_dict(data["fault_model"]), data["seed"])
        except ArgumentError as e:
            raise FaultSetFileError(f"fault set file '{path}': {e}") from e


def draw_fault_set(layers: Mapping[str, torch.nn.Module], fault_model: BaseFaultModel, seed: int) -> FaultSet:
    """Draw one chip for the given RRAM layers (module path → layer)."""
    seed_int(seed)
    return FaultSet(fault_model.draw_codes(layers, seed), fault_model, seed)


def uint32_draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """The ``n`` uint32 values that ``rng.random(n, dtype=np.float32)`` turns into floats (each float is
    ``(r >> 8) · 2**-24``), leaving ``rng`` in the same state. For PCG64 they are read straight from
    ``n / 2`` raw 64-bit outputs (low half first), about twice as fast as ``rng.integers``."""
    bitgen = rng.bit_generator
    state = bitgen.state if isinstance(bitgen, np.random.PCG64) and sys.byteorder == "little" else None
    if state is None or state["has_uint32"] or n == 0:
        return rng.integers(0, 2**32, size=n, dtype=np.uint32)  # the same stream, value by value
    words = bitgen.random_raw((n + 1) // 2)
    # PCG64 keeps the high half of its last word, unused after an odd number of 32-bit draws.
    state = bitgen.state
    state["has_uint32"], state["uinteger"] = n % 2, int(words[-1] >> np.uint64(32))
    bitgen.state = state
    return words.view(np.uint32)[:n]


def uint32_bound(rate: float) -> int:
    """The bound b with ``r < b`` iff ``(r >> 8) · 2**-24 < float32(rate)`` for every uint32 r: the
    float32 comparison of `uint32_draws`' uniforms with a rate, done in integers. At most 2**32."""
    return math.ceil(float(np.float32(rate)) * 2**24) << 8


def _below(bits: np.ndarray, bound: int) -> np.ndarray:
    if bound >= 2**32:
        return np.ones(bits.shape, dtype=np.bool_)
    return np.less(bits, bound)


def _plain(*tensors: torch.Tensor) -> bool:
    """Eager tensors with data (not the fake or functional tensors of export and compile tracing)."""
    return not torch.compiler.is_compiling() and all(type(t) is torch.Tensor for t in tensors)


_NUMPY_FLOATS = (torch.float32, torch.float64)


def chip_seed(seed: int, trial: int) -> int:
    """The seed of the ``trial``-th simulated chip of a Monte-Carlo run started from ``seed``.

    PyTorch evaluation and onnxruntime simulation both draw chip ``trial`` with
    ``inject_faults(gm, fault_model, seed=chip_seed(seed, trial))``, so they see the same chips.
    """
    state = np.random.SeedSequence([seed, trial]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1
