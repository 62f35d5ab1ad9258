"""Checks of tensors a user hands in, shared by every stage: example inputs, a batch's images and labels
against the model, fault codes, a state dict against the model it is loaded into, onnxruntime inputs.

Scalar and path checks are in `rramfx.checks`; these need torch (and NumPy for onnxruntime feeds). Each
raises the caller's `ArgumentError` subclass naming the argument, what was given and what to pass, so a
bad input is refused before anything is computed or changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rramfx.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_array", "check_example_inputs", "check_fault_codes", "check_labels", "check_model_inputs",
           "check_state_dict", "first_layer", "input_hint", "run_example", "unbatched"]

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def check_example_inputs(name: str, value: Any) -> tuple[torch.Tensor, ...]:
    """``value`` (one tensor, or a non-empty tuple/list of tensors) as a tuple of tensors, else
    `ArgumentTypeError` naming ``name``."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise ArgumentTypeError(f"{name} must be a tensor (a batch the model accepts, e.g. torch.randn(2, 3, 32, 32)) "
                                f"or a tuple of tensors, got {_describe(value)}")
    return tuple(items)


def check_model_inputs(name: str, model: nn.Module, value: Any,
                       error: type[ArgumentError] = ArgumentError) -> tuple[torch.Tensor, ...]:
    """``value`` as example inputs for ``model``: tensors (`check_example_inputs`), the first one of the
    model's floating dtype and batched for its first convolution; else ``error`` naming ``name`` and the
    batch the model takes (torch's own messages name neither)."""
    args = check_example_inputs(name, value)
    x = args[0]
    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None)
    takes_indices = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())
    if dtype is not None and x.dtype != dtype and (x.dtype.is_floating_point or not takes_indices):
        raise error(f"{name} is {x.dtype}, the model's weights are {dtype}: pass x.to({dtype})"
                    + (f" (the model takes {input_hint(model)})" if input_hint(model) else ""))
    if unbatched(model, x):
        raise error(f"{name} has shape {tuple(x.shape)}, one sample without its batch dimension: pass "
                    f"x.unsqueeze(0), a batch {input_hint(model)}")
    return args


def run_example(name: str, model: nn.Module, args: tuple[torch.Tensor, ...],
                error: type[ArgumentError] = ArgumentError) -> Any:
    """``model(*args)`` without gradients; a shape or dtype the model cannot take (torch's RuntimeError,
    ValueError, TypeError or IndexError) becomes ``error`` naming ``name``, its shape and the batch the
    model's first layer takes. The caller chooses the mode (eval for a check that changes no statistic)."""
    try:
        with torch.no_grad():
            return model(*args)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else _describe(a) for a in args)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise error(f"{name} {shapes} does not fit the model ({first}); "
                    f"it takes a batch {input_hint(model) or 'of the shape its first layer expects'}") from e


def first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first convolution or linear layer of ``model`` in registration order (the stem, for the
    usual network), or None."""
    return next(((p, m) for p, m in model.named_modules() if isinstance(m, _LAYERS)), None)


def input_hint(model: nn.Module) -> str:
    """What a batch for ``model`` looks like, from its first layer: ``(N, 3, H, W) (first layer conv1:
    Conv2d with in_channels=3)``; empty when the model has none."""
    found = first_layer(model)
    if found is None:
        return ""
    path, m = found
    if isinstance(m, nn.Linear):
        return f"(N, ..., {m.in_features}) (first layer {path}: Linear with in_features={m.in_features})"
    dims = ", ".join("HWD"[:m.weight.dim() - 2]) if m.weight.dim() > 3 else "L"
    return f"(N, {m.in_channels}, {dims}) (first layer {path}: {type(m).__name__} with in_channels={m.in_channels})"


def unbatched(model: nn.Module, x: torch.Tensor) -> bool:
    """True when ``x`` is one sample without its batch dimension for ``model``'s first convolution
    (torch accepts such inputs silently, and every later step then misreads the first dimension)."""
    found = first_layer(model)
    return found is not None and not isinstance(found[1], nn.Linear) and x.dim() == found[1].weight.dim() - 1


def check_labels(name: str, y: Any, num_outputs: int, batch: int, error: type[ArgumentError] = ArgumentError) -> None:
    """``y`` must be a 1-D integer tensor of ``batch`` class indices in [0, num_outputs): float labels would
    train nothing and score 0, out-of-range ones fail inside cross-entropy."""
    if not isinstance(y, torch.Tensor):
        raise error(f"{name} must be a tensor of class indices, got {_describe(y)}")
    if y.dtype == torch.bool or y.dtype.is_floating_point or y.dtype.is_complex:
        raise error(f"{name} must hold integer class indices (torch.long), got dtype {y.dtype}; "
                    "convert with labels.long() (one-hot or soft labels are not supported)")
    if y.dim() != 1 or y.shape[0] != batch:
        raise error(f"{name} must have shape ({batch},) (one class per image), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_outputs):
        raise error(f"{name} holds classes {int(y.min())}..{int(y.max())}, the model has {num_outputs} outputs "
                    f"(classes 0..{num_outputs - 1}): give the model num_classes={int(y.max()) + 1} or fix the labels")


def check_state_dict(expected: Mapping[str, torch.Tensor], loaded: Any, where: str,
                     error: type[Exception]) -> None:
    """Check every entry of ``loaded`` against the model's own ``expected`` state dict (same names,
    shapes, floating or not) before a single tensor is copied; raises ``error`` naming ``where`` and the
    first differences."""
    if not isinstance(loaded, Mapping):
        raise error(f"{where} holds no state dict (got {type(loaded).__name__})")
    missing = [k for k in expected if k not in loaded]
    extra = [k for k in loaded if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} (the model's: {tuple(expected[k].shape)})" for k, v in loaded.items()
             if k in expected and (not isinstance(v, torch.Tensor) or v.shape != expected[k].shape
                                   or v.dtype.is_floating_point != expected[k].dtype.is_floating_point)]
    if missing or extra or wrong:
        parts = [f"{label}: {', '.join(map(str, items[:4]))}{', ...' if len(items) > 4 else ''}"
                 for label, items in (("missing", missing), ("not in the model", extra), ("other shape", wrong))
                 if items]
        raise error(f"{where} does not fit this model ({'; '.join(parts)}): it was written for another model; "
                    "nothing was loaded")


def check_fault_codes(name: str, codes: Any, allowed: Collection[int] | None,
                      error: type[ArgumentError] = ArgumentError) -> torch.Tensor:
    """``codes`` as a uint8 tensor of fault codes: an integer tensor whose values are in ``allowed``
    (0..255 when None); floats, negative codes or codes the fault model does not know are refused
    rather than cast or wrapped into healthy cells."""
    if not isinstance(codes, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a tensor of fault codes, got {_describe(codes)}")
    if codes.dtype == torch.bool or codes.dtype.is_floating_point or codes.dtype.is_complex:
        raise error(f"{name} must hold integer fault codes, got dtype {codes.dtype}")
    if codes.numel():
        low, high = (int(v) for v in torch.aminmax(codes))  # one pass; the set of values only when needed
        if low >= 0 and high <= 255 and (allowed is None or set(range(low, high + 1)) <= set(allowed)):
            return codes.to("cpu", torch.uint8)
        values = torch.unique(codes).tolist()
        bad = [v for v in values if not 0 <= v <= 255 or (allowed is not None and v not in allowed)]
        if bad:
            known = sorted(allowed) if allowed is not None else "0..255"
            raise error(f"{name} holds fault codes {bad[:5]}; valid codes: {known}")
    return codes.to("cpu", torch.uint8)


def check_array(name: str, value: Any, dtype: str, shape: tuple[Any, ...], error: type[Exception]) -> np.ndarray:
    """``value`` as a NumPy array of ``dtype`` (``"float32"``, ``"uint8"``, ...) and ``shape`` (None or
    a str for a free dimension) for an onnxruntime input; an array of another dtype or size is ``error``
    naming ``name`` and what the model takes (onnxruntime's own message names neither)."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.dtype != np.dtype(dtype):
        raise error(f"input '{name}' is {arr.dtype}, the model takes {dtype}: convert it (x.astype(np.{dtype}))")
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if arr.ndim != len(fixed) or any(d is not None and d != a for d, a in zip(fixed, arr.shape, strict=False)):
        want = "(" + ", ".join("?" if d is None else str(d) for d in fixed) + ")"
        raise error(f"input '{name}' has shape {tuple(arr.shape)}, the model takes {want}")
    return arr


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:120]
