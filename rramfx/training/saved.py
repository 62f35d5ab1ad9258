"""Trained prepared models on disk: `save_prepared` writes one, `load_prepared` rebuilds it.

A trained model is stored as *how to rebuild it* (model spec, its arguments and the policy) plus its
state_dict, so the file loads with ``weights_only=True``, structural passes in the policy are re-run
on load, and the file survives changes to the toolkit's classes. (A run's resumable state is the
training checkpoint of `rramfx.training.loop`, not this.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from rramfx.checks import writable_file
from rramfx.errors import ModelFileError
from rramfx.files import load_checked_torch, save_checked_torch
from rramfx.graph.record import rramfx_meta
from rramfx.models.spec import create_model
from rramfx.policy import Policy
from rramfx.preparation import prepare
from rramfx.tensor_checks import check_state_dict

__all__ = ["load_prepared", "save_prepared"]

_MODEL_FORMAT = "rramfx.PreparedModel"
_FIELDS = ("model", "model_kwargs", "policy", "input_shape", "state_dict")


def save_prepared(path: str | Path, gm: fx.GraphModule, *, model: str, model_kwargs: dict[str, Any] | None = None,
                  policy: dict[str, Any] | None = None, input_shape: tuple[int, ...] | None = None,
                  info: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """Save a trained prepared model as its recipe plus weights.

    ``model`` is the model spec (``resnet20``, ``timm:NAME``, ...) and ``model_kwargs`` its arguments
    (``num_classes``, ``in_chans``, ``width``, ...); ``policy`` the policy dict it was prepared with
    (default: the one recorded on ``gm``); ``input_shape`` the shape of one input (C, H, W), which
    `load_prepared` needs when the policy runs structural passes that read tensor shapes (widening,
    padding); ``info`` any plain data to keep beside (history, accuracy); ``data`` the data spec the
    model was trained on (``dataset``, ``data_dir``, ``image_size``, ``in_chans``, ``mean``, ``std``,
    ``class_names``, ``train_subset``, ``test_subset``: see `rramfx.data.ImageData.describe`), which
    ``rramfx evaluate``/``export``/``sweep`` use unless told otherwise.
    """
    path = writable_file("save_prepared path", path)
    policy = policy if policy is not None else rramfx_meta(gm).get("policy", {})
    state = {k: v.detach().cpu() for k, v in gm.state_dict().items()}
    record = {"model": model, "model_kwargs": dict(model_kwargs or {}), "policy": dict(policy),
              "input_shape": list(input_shape) if input_shape else None, "state_dict": state,
              "info": dict(info or {}), "data": dict(data or {})}
    return save_checked_torch(path, _MODEL_FORMAT, 2, record)


def load_prepared(path: str | Path, map_location: str | torch.device = "cpu", *,
                  model: nn.Module | None = None) -> tuple[fx.GraphModule, dict[str, Any]]:
    """Rebuild a model saved with `save_prepared`: returns ``(gm, record)`` with ``gm`` in eval mode on
    ``map_location`` and ``record`` holding ``model``, ``model_kwargs``, ``policy``, ``input_shape``,
    ``info`` and ``data`` (the data spec; for files written before it, what ``info`` recorded of it).

    ``model``: an untrained instance to prepare and load the weights into, instead of creating one
    from the saved spec (for models that no spec names); it is not changed."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist (write one with `rramfx train --out {path}`)")
    _, data = load_checked_torch(path, _MODEL_FORMAT, ModelFileError, map_location=map_location)
    lacks = [k for k in _FIELDS if not isinstance(data, dict) or k not in data]
    if lacks:
        raise ModelFileError(f"'{path}' is not an rramfx trained model (written by rramfx.save_prepared / "
                             f"rramfx train): it lacks {lacks}")
    if model is None:
        model = create_model(data["model"], **data["model_kwargs"]).eval()
    shape = data.get("input_shape")
    example = torch.zeros(2, *shape) if shape else None
    gm = prepare(model, Policy.from_dict(data["policy"]), example_inputs=example)
    check_state_dict(gm.state_dict(), data["state_dict"], f"model file '{path}' ({data['model']} with its policy)",
                     ModelFileError)
    gm.load_state_dict(data["state_dict"])
    gm.to(map_location)
    record = {k: data.get(k) for k in ("model", "model_kwargs", "policy", "input_shape", "info")}
    old = {k: v for k, v in (data.get("info") or {}).items() if k in ("dataset", "data_dir", "image_size")}
    record["data"] = dict(data.get("data") or old)
    return gm.eval(), record
