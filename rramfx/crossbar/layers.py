"""Crossbar layers: the convolutions and linear layers that a prepared model runs on RRAM.

A crossbar layer *is* the layer it replaces (its class is a subclass made on the fly, so
``isinstance(m, nn.Conv2d)`` and ``isinstance(m, timm.layers.Conv2dSame)`` still hold, and the
state_dict keys are unchanged); it only changes the weight the layer computes with:

- training, drop rate p > 0: DropConnect, a fresh Bernoulli keep-mask per forward, kept weights × 1/(1-p);
- training with train faults (``Policy.train_faults``): the weight read through a fault pattern drawn
  afresh per forward (`rramfx.crossbar.trainfaults`), in place of DropConnect;
- faults injected: the weight as the faulty crossbar reads it, × 1/(1-p') in eval (p' = expected
  fault rate), × mask/(1-p) in training;
- eval without faults (or training with p = 0 and no faults): exactly the original layer.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rramfx.crossbar.faults import BaseFaultModel

__all__ = [
    "DRAW_LEVELS",
    "CrossbarLayer",
    "crossbar_class",
    "dropconnect",
    "keep_mask",
    "to_crossbar_layer",
    "to_plain_layer",
]

_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}
# Layers whose forward is torch's own: the faulty weight is passed straight to the kernel.
_DEFAULT_FORWARDS = {nn.Linear.forward, nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward}


#: Resolution of the drop probability: a weight is dropped when a uniform 16-bit draw is below
#: round(p · 2**16), so the Bernoulli rate is p to within 2**-17.
DRAW_LEVELS = 1 << 16


def dropconnect(weight: torch.Tensor, p: float) -> torch.Tensor:
    """``weight`` with each entry dropped with probability ``p`` and the kept ones scaled by 1/(1-p).

    One mask draw per call, taken from torch's global generator so ``torch.manual_seed`` makes
    training reproducible and every call (layer, step) gets an independent mask. On the CPU the mask
    comes from 16 raw random bits per weight compared in integers (`keep_mask`), and only that one-byte
    mask is kept for the backward pass: a fraction of the memory traffic of float uniforms and a float
    mask (see benchmarks/README.md). Elsewhere the device's fused dropout kernel does the whole job.
    """
    if p == 0:
        return weight
    if weight.device.type != "cpu":
        return F.dropout(weight, p, training=True)
    if torch.compiler.is_compiling():
        return _dropconnect_op(weight, p)[0]
    return _DropConnect.apply(weight, keep_mask(weight.shape, p), 1.0 / (1.0 - p))


# Under torch.compile the mask draw (NumPy's PCG64 seeded from torch's generator) cannot be traced,
# and a graph break per layer measured slower than eager. As an opaque custom op the whole model
# stays one graph; the op draws the same masks as eager mode, in the same order (graph order).
@torch.library.custom_op("rramfx::dropconnect", mutates_args=())
def _dropconnect_op(weight: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    keep = keep_mask(weight.shape, p)
    return _masked_scale(weight, keep, 1.0 / (1.0 - p)), keep


@_dropconnect_op.register_fake
def _dropconnect_op_fake(weight: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(weight), torch.empty(weight.shape, dtype=torch.bool, device=weight.device)


def _dropconnect_op_setup(ctx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(output[1])
    ctx.scale = 1.0 / (1.0 - inputs[1])


def _dropconnect_op_backward(ctx, grad: torch.Tensor, _grad_keep: torch.Tensor) -> tuple[torch.Tensor, None]:
    (keep,) = ctx.saved_tensors
    # Not _masked_scale: its out= form fails under AOTAutograd's tracing (tested); inductor fuses this.
    return grad * keep * ctx.scale, None


_dropconnect_op.register_autograd(_dropconnect_op_backward, setup_context=_dropconnect_op_setup)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A CPU ``bool`` tensor of ``shape``, each entry False with probability round(p · 2**16) / 2**16.

    Why this way: it is DropConnect's whole random cost, so it is drawn near the memory limit. Each
    call takes a fresh 124-bit PCG64 state from torch's global generator (``torch.manual_seed``
    reproduces the mask); PCG64 gives ``numel / 4`` raw 64-bit words, read as signed 16-bit integers
    (uniform on [-2**15, 2**15)) and compared with an integer threshold: nothing is converted to float.
    """
    n = math.prod(shape)
    dropped = round(p * DRAW_LEVELS)
    state = _state_from_torch()  # drawn in every case, so torch's generator advances alike
    if dropped <= 0 or dropped >= DRAW_LEVELS:
        return torch.full(tuple(shape), dropped <= 0, dtype=torch.bool)
    bits = _raw_words(state, -(-n // 4)).view(np.int16)[:n]
    # A weight is dropped iff its signed draw is below dropped - 2**15: `dropped` of the 2**16 values.
    return torch.from_numpy(np.greater_equal(bits, dropped - DRAW_LEVELS // 2).reshape(tuple(shape)))


#: PCG's default 128-bit stream (odd, as PCG requires); the state alone is drawn per call.
_PCG_INCREMENT = 0x5851F42D4C957F2D14057B7EF767814F
_THREAD = threading.local()


def _state_from_torch() -> int:
    high, low = torch.randint(0, 2**62, (2,)).tolist()
    return high << 62 | low


def _raw_words(state: int, count: int) -> np.ndarray:
    """``count`` raw PCG64 outputs from ``state``. The state is set on one generator per thread: a
    new ``PCG64(seed)`` hashes its seed through a SeedSequence, a fixed cost per layer and step that
    measured as large as the draw itself for small layers (the state is already random bits here)."""
    gen = getattr(_THREAD, "pcg64", None)
    if gen is None:
        gen = _THREAD.pcg64 = np.random.PCG64()
    gen.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": _PCG_INCREMENT},
                 "has_uint32": 0, "uinteger": 0}
    return gen.random_raw(count)


_ZERO = torch.zeros(())


def _masked_scale(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """x · keep · scale: the mask's bytes converted to x's dtype and layout, then one vectorised
    ``addcmul`` in place (a product with the ``bool`` mask itself casts element by element on the
    CPU, and a new output costs page faults: each several times slower, see benchmarks/README.md)."""
    out = torch.empty_like(x).copy_(keep.view(torch.uint8))
    return torch.addcmul(_ZERO.to(x.dtype), x, out, value=scale, out=out)


class _DropConnect(torch.autograd.Function):
    """weight · keep · scale, keeping only the ``bool`` mask for the backward pass: the gradient of a
    dropped weight is exactly 0, of a kept weight exactly ``scale`` × the upstream gradient."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _masked_scale(weight, keep, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return _masked_scale(grad, keep, ctx.scale), None, None


class CrossbarLayer(nn.Module):
    """Mixin of every crossbar layer. Not instantiated directly: see `to_crossbar_layer`."""

    drop_rate: float
    fault_rate: float
    fault_codes: torch.Tensor | None
    fault_model: BaseFaultModel | None
    #: Training-time fault draw (`rramfx.crossbar.trainfaults.LayerTrainFaults`), or None: DropConnect.
    train_faults = None

    @property
    def has_faults(self) -> bool:
        return self.fault_codes is not None

    @property
    def read_scale(self) -> float:
        """The factor 1/(1-p') a faulty weight is read with in evaluation (1 when p' is 0)."""
        return 1.0 / (1.0 - self.fault_rate) if self.fault_rate > 0 else 1.0

    def faulty_read(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """The weight as this layer's chip reads it in evaluation, without autograd: corrupted by its
        fault codes, then × `read_scale` (into ``out`` when given, see `BaseFaultModel.read_weight`)."""
        return self.fault_model.read_weight(self.weight, self.fault_codes, self.read_scale, out=out)

    def effective_weight(self) -> torch.Tensor:
        """The weight this forward computes with (see the module docstring)."""
        w = self.weight
        if self.fault_codes is not None:
            if not self.training and not (torch.is_grad_enabled() and w.requires_grad):
                return self.faulty_read()  # the same as the differentiable path below, faster
            w = self.fault_model.corrupt(w, self.fault_codes)
        if self.training:
            if self.train_faults is not None:
                return self.train_faults(w)
            return dropconnect(w, self.drop_rate) if self.drop_rate > 0 else w
        if self.fault_codes is not None and self.fault_rate > 0:
            return w * self.read_scale
        return w

    def forward(self, *args, **kwargs):
        w = self.effective_weight()
        if w is self.weight:
            return super().forward(*args, **kwargs)
        if self._rramfx_base.forward in _DEFAULT_FORWARDS:
            if isinstance(self, nn.Linear):
                return F.linear(args[0], w, self.bias)
            return self._conv_forward(args[0], w, self.bias)
        # A class with its own forward (timm's Conv2dSame, StdConv2d, a transposed conv, ...) runs
        # unchanged with its weight swapped, so its padding or standardisation is kept.
        with _weight_replaced(self, w):
            return super().forward(*args, **kwargs)

    def extra_repr(self) -> str:
        extra = f"drop_rate={self.drop_rate}, fault_rate={self.fault_rate}"
        if self.fault_codes is not None:
            extra += f", faults={int((self.fault_codes != 0).sum())}/{self.fault_codes.numel()}"
        return f"{super().extra_repr()}, {extra}"

    def __reduce_ex__(self, protocol):
        # The class is made at run time, so pickle rebuilds it from the base class instead.
        return (_new_crossbar_instance, (self._rramfx_base,), self.__dict__.copy())


@contextlib.contextmanager
def _weight_replaced(module: nn.Module, weight: torch.Tensor) -> Iterator[None]:
    """Make ``module.weight`` read ``weight`` for the duration (instance attribute shadows the
    registered parameter, which stays in place for the optimiser and the state_dict)."""
    module.__dict__["weight"] = weight
    try:
        yield
    finally:
        del module.__dict__["weight"]


def crossbar_class(base: type[nn.Module]) -> type[nn.Module]:
    """The crossbar subclass of a convolution or linear class, made once per class."""
    if issubclass(base, CrossbarLayer):
        return base
    if base not in _CLASSES:
        cls = type(f"Crossbar{base.__name__}", (CrossbarLayer, base), {"_rramfx_base": base})
        cls.__module__ = __name__
        _CLASSES[base] = cls
    return _CLASSES[base]


def _new_crossbar_instance(base: type[nn.Module]) -> nn.Module:
    cls = crossbar_class(base)
    return cls.__new__(cls)


def to_crossbar_layer(module: nn.Module, drop_rate: float, fault_rate: float,
                      train_faults: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """Turn ``module`` (in place) into its crossbar subclass, fault-free, with the given rates;
    ``train_faults`` (weight -> read weight, drawn per call) replaces DropConnect in training."""
    module.__class__ = crossbar_class(type(module))
    module.drop_rate = float(drop_rate)
    module.fault_rate = float(fault_rate)
    module.train_faults = train_faults
    module.fault_model = None
    if "fault_codes" not in module._buffers:
        module.register_buffer("fault_codes", None, persistent=False)
    module.fault_codes = None
    return module


def to_plain_layer(module: nn.Module) -> nn.Module:
    """Undo `to_crossbar_layer` in place (the layer computes as before it was converted)."""
    if isinstance(module, CrossbarLayer):
        module.__class__ = module._rramfx_base
        module._buffers.pop("fault_codes", None)
        for name in ("drop_rate", "fault_rate", "fault_model", "train_faults"):
            module.__dict__.pop(name, None)
    return module
