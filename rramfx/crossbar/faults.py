"""Fault models and fault sets: what a defective crossbar does to the weights programmed into it.

A *fault model* draws a per-weight code tensor for one layer and knows how those codes corrupt the
layer's weight. A *fault set* is one simulated chip: the codes of every RRAM layer, drawn from a seed
so that the same seed gives the same chip on any machine, device, and in the ONNX export.

New fault kinds (cell-level, differential pairs, bit slices, whole word/bit lines) subclass
`BaseFaultModel`, choose their own codes and register themselves with `register_fault_model`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rramfx.checks import seed_int, unit_rate
from rramfx.errors import FaultError, FaultSetFileError

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

    @abstractmethod
    def sample(self, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
        """Draw the ``uint8`` fault codes of one layer's weight (0 means healthy)."""

    @abstractmethod
    def corrupt(self, weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The weight as the faulty crossbar reads it."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, including ``"kind"``, that `fault_model_from_dict` reads back."""


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

    def __post_init__(self) -> None:
        for name in ("sa1", "sa0"):
            rate = unit_rate(f"FaultModel.{name}", getattr(self, name), FaultError, allow_one=True)
            object.__setattr__(self, name, rate)
        if self.sa1 + self.sa0 > 1.0:
            raise FaultError(f"FaultModel.sa1 + FaultModel.sa0 must be at most 1, got {self.sa1 + self.sa0}")

    def sample(self, shape: torch.Size, rng: np.random.Generator) -> torch.Tensor:
        u = rng.random(tuple(shape), dtype=np.float32)
        codes = np.zeros(u.shape, dtype=np.uint8)
        codes[u < self.sa1] = SA1
        codes[(u >= self.sa1) & (u < self.sa1 + self.sa0)] = SA0
        return torch.from_numpy(codes)

    def corrupt(self, weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        stuck_high = weight.detach().abs().amax()
        sa0_value = torch.where(weight >= 0, stuck_high, -stuck_high)
        out = torch.where(codes == SA0, sa0_value, weight)
        return torch.where(codes == SA1, torch.zeros_like(weight), out)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def fault_model_from_dict(data: Mapping[str, Any]) -> BaseFaultModel:
    """Rebuild a fault model saved with ``to_dict``."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _REGISTRY:
        raise FaultError(f"unknown fault model kind {kind!r}; known kinds: {sorted(_REGISTRY)}")
    return _REGISTRY[kind](**data)


def layer_rng(seed: int, path: str) -> np.random.Generator:
    """The random stream of one layer of one chip: depends only on the seed and the module path,
    so a chip's masks do not change when other layers are added, removed or reordered."""
    digest = hashlib.sha256(path.encode()).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *np.frombuffer(digest[:16], np.uint32)])))


class FaultSet(Mapping[str, torch.Tensor]):
    """One simulated chip: module path → ``uint8`` code tensor of the weight's shape
    (0 healthy, 1 SA1, 2 SA0 for `FaultModel`), with the fault model and seed that drew it."""

    def __init__(self, codes: Mapping[str, torch.Tensor], fault_model: BaseFaultModel, seed: int | None):
        self._codes = {k: v.to("cpu", torch.uint8) for k, v in codes.items()}
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
        path = Path(path)
        torch.save({"format": "rramfx.FaultSet/1", "fault_model": self.fault_model.to_dict(),
                    "seed": self.seed, "codes": self._codes}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FaultSet:
        """Read a chip written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FaultSetFileError(f"fault set file '{path}' does not exist")
        try:
            data = torch.load(path, weights_only=True)
        except Exception as e:
            raise FaultSetFileError(f"'{path}' is not a readable rramfx fault set: {e}") from e
        if not isinstance(data, dict) or data.get("format") != "rramfx.FaultSet/1":
            raise FaultSetFileError(f"'{path}' is not an rramfx fault set (no 'rramfx.FaultSet/1' format tag)")
        return cls(data["codes"], fault_model_from_dict(data["fault_model"]), data["seed"])


def draw_fault_set(layers: Mapping[str, torch.nn.Module], fault_model: BaseFaultModel, seed: int) -> FaultSet:
    """Draw one chip for the given RRAM layers (module path → layer)."""
    seed_int(seed)
    codes = {path: fault_model.sample(layer.weight.shape, layer_rng(seed, path)) for path, layer in layers.items()}
    return FaultSet(codes, fault_model, seed)


def chip_seed(seed: int, trial: int) -> int:
    """The seed of the ``trial``-th simulated chip of a Monte-Carlo run started from ``seed``.

    PyTorch evaluation and onnxruntime simulation both draw chip ``trial`` with
    ``inject_faults(gm, fault_model, seed=chip_seed(seed, trial))``, so they see the same chips.
    """
    state = np.random.SeedSequence([seed, trial]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1
