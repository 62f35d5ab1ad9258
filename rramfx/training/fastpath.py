"""The training step's speed options: ``compile``, ``channels_last`` and ``precision``.

Each is off by default and changes only how the step computes, not what it computes (bf16 rounds):

- ``precision``: ``"bf16"`` runs the forward under ``torch.autocast(device, torch.bfloat16)`` (the
  parameters, the optimiser and the loss stay fp32), ``"fp32"`` without it; None keeps the older
  ``amp`` switch's rule (bf16 on CUDA, fp32 elsewhere). `autocast_dtype` resolves the two.
- ``channels_last``: the model's 4-D parameters and buffers and each 4-D input batch in
  ``torch.channels_last`` memory format for the run (`memory_format`).
- ``compile``: the forward through ``torch.compile`` (`CompiledForward`). DropConnect's CPU mask
  draw is an opaque custom op (``rramfx::dropconnect``), so a model stays one graph and draws the same
  masks as in eager mode. Compilation happens at the first step of each new input shape and is
  timed; if it fails, the step is redone eagerly, the run goes on eagerly and one warning says why.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rramfx.errors import ArgumentError, ArgumentTypeError

PRECISIONS = ("fp32", "bf16")

__all__ = ["PRECISIONS", "CompiledForward", "autocast_dtype", "channels_last_model", "check_speed_options",
           "memory_format"]


def check_speed_options(compile: Any, channels_last: Any, precision: Any, amp: Any) -> None:
    """Raise `ArgumentTypeError` / `ArgumentError` naming the option that is not a bool or not one of
    `PRECISIONS`, or when ``amp`` and ``precision`` are both given and disagree."""
    for name, value in (("compile", compile), ("channels_last", channels_last)):
        if not isinstance(value, bool):
            raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    if amp is not None and not isinstance(amp, bool):
        raise ArgumentTypeError(f"amp must be True, False or None, got {amp!r}")
    if precision is not None and precision not in PRECISIONS:
        raise ArgumentError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
    if precision is not None and amp is not None and amp != (precision == "bf16"):
        raise ArgumentError(f"precision={precision!r} contradicts amp={amp!r}: pass only precision "
                            f"(amp=True is precision='bf16', amp=False is precision='fp32')")


def autocast_dtype(precision: str | None, amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The dtype the forward autocasts to (None: no autocast): ``precision`` if given, else ``amp``,
    else bf16 on CUDA only."""
    if precision is not None:
        return torch.bfloat16 if precision == "bf16" else None
    on = device.type == "cuda" if amp is None else amp
    return torch.bfloat16 if on else None


def memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last memory format when asked for and 4-D, else ``x`` itself."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def channels_last_model(model: nn.Module) -> nn.Module:
    """``model`` itself, its 4-D parameters and buffers put in channels-last memory format, and a forward
    pre-hook that puts its 4-D tensor inputs there too: for code that feeds batches as they come
    (`rramfx.monte_carlo`, BatchNorm recalibration). Meant for a copy that is thrown away after; the
    outputs differ from the contiguous model's by float rounding only. ResNet-20 evaluates 1.37-1.45x
    faster so on a 2-core AVX2 CPU (benchmarks/README.md, "The demo's speed")."""
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(_channels_last_inputs)
    return model


def _channels_last_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(memory_format(a, True) if isinstance(a, torch.Tensor) else a for a in args)


class CompiledForward:
    """``torch.compile(model)`` made at the first call, run through `step`, eager after a failure.

    ``compile_seconds`` adds up the wall time of the steps that met a new input shape (compilation,
    or recompilation, plus that one step); ``fallback`` is the reason compilation was given up, if it
    was (and then warned about, once)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.compiled: Callable[..., Any] | None = None
        self.fallback: str | None = None
        self.compile_seconds = 0.0
        self._shapes: set[tuple[int, ...]] = set()

    def step(self, x: torch.Tensor, run: Callable[[Callable[..., Any]], Any], reset: Callable[[], None]) -> Any:
        """``run(forward)``: one training step that calls ``forward(x)``, compiled unless it failed.
        A step that meets a new shape is timed; if it raises, ``reset()`` undoes its partial effect
        (gradients), torch's random state is restored and it is redone eagerly."""
        if self.fallback is not None:
            return run(self.model)
        shape = tuple(x.shape)
        if shape in self._shapes:
            return run(self.compiled)
        rng = torch.get_rng_state()
        start = time.perf_counter()
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.model)
            out = run(self.compiled)
        except Exception as e:  # any failure of dynamo, a backend or its compiler: go on eagerly
            self.fallback = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            warnings.warn(f"torch.compile failed ({self.fallback}); training goes on without it (eager)",
                          RuntimeWarning, stacklevel=4)
            reset()
            torch.set_rng_state(rng)
            return run(self.model)
        self.compile_seconds += time.perf_counter() - start
        self._shapes.add(shape)
        return out
