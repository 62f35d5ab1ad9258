"""The user's own trained weights: read a weights file and load it into a model, with a clear error.

`read_weights` takes what people save: a plain ``state_dict`` (``torch.save(model.state_dict(), f)``,
torchvision's weight files), a checkpoint dict holding one (under ``state_dict``, ``model``,
``model_state_dict``, ...; timm's EMA weights first, as timm reads them), a ``.safetensors`` file (timm's
hub files), with a DataParallel ``module.`` prefix removed. timm's ``load_state_dict`` reads the file.
`load_weights` loads it strictly into a model; a mismatch raises `ModelFileError` naming the first
missing, unexpected and mis-shaped keys and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rramfx.errors import ModelFileError

__all__ = ["load_weights", "read_weights"]

#: Keys under which checkpoints of common training scripts hold the state_dict (besides timm's).
_NESTED = ("model_state_dict", "state_dict", "model", "net", "network", "weights")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict in the weights file ``path`` (see the module docstring), on the CPU."""
    from timm.models import load_state_dict

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file '{path}' does not exist")
    try:
        state: Any = load_state_dict(str(path), use_ema=True, device="cpu", weights_only=True)
    except Exception as e:
        raise ModelFileError(f"cannot read weights file '{path}' (a torch.save'd state_dict, a checkpoint "
                             f"holding one, or .safetensors): {e}") from None
    for _ in range(2):  # a checkpoint's state_dict may sit one level further in
        if isinstance(state, Mapping) and not all(isinstance(v, torch.Tensor) for v in state.values()):
            nested = next((state[k] for k in _NESTED if isinstance(state.get(k), Mapping)), None)
            if nested is None:
                break
            state = {k[7:] if k.startswith("module.") else k: v for k, v in nested.items()}
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"weights file '{path}' holds no state_dict (a dict of tensors): save one with "
                             "torch.save(model.state_dict(), FILE)")
    return dict(state)


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def load_weights(model: nn.Module, path: str | Path, *, what: str = "the model") -> nn.Module:
    """Load the weights file ``path`` into ``model`` (changed in place, on purpose, and returned).
    Every key must fit: a mismatch raises `ModelFileError` naming the first missing, unexpected and
    mis-shaped keys of ``what`` (the model spec in messages); ``model`` is then unchanged."""
    state = read_weights(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shaped:
        parts = [f"{len(missing)} missing: {_first(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {_first(unexpected)}" if unexpected else "",
                 f"{len(shaped)} of another shape: {_first(shaped)}" if shaped else ""]
        raise ModelFileError(
            f"the weights in '{path}' do not fit {what} ({'; '.join(p for p in parts if p)}). Check --model, "
            "--num-classes and --in-chans (a different classifier size shows as a shape mismatch; with a timm "
            "model, --pretrained FILE loads the rest and a fresh classifier)")
    model.load_state_dict(state)
    return model
