"""The registry of reference models: their names, and `create`, which builds one by name.

`rramfx.models` re-exports `create` and `list_models`; `rramfx.models.spec.create_model` hands every
model spec without a ``prefix:`` here. ``mini_mobilenet_<n>`` is a family of names, one per bottleneck
count.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from rramfx.errors import ModelSpecError
from rramfx.models.mini_mobilenets import mini_mobilenet
from rramfx.models.mobilenet_v2 import mobilenetv2
from rramfx.models.resnet import resnet20, resnet32, resnet56
from rramfx.models.vgg import vgg11, vgg13, vgg16

__all__ = ["create", "list_models"]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "mobilenetv2": mobilenetv2,
    "mini_mobilenet": mini_mobilenet,
}
_MINI = re.compile(r"mini_mobilenet_(\d+)$")


def list_models() -> list[str]:
    """Names that `create` accepts (``mini_mobilenet_<n>`` stands for any number of bottlenecks)."""
    return [*_MODELS, "mini_mobilenet_<n>"]


def create(name: str, num_classes: int = 10, in_chans: int = 3, width: float = 1.0, **kwargs: Any) -> nn.Module:
    """Create the reference model ``name`` with fresh weights.

    ``width`` scales every channel count; further keyword arguments go to the model's constructor
    (e.g. ``bottlenecks=4`` for ``mini_mobilenet``). An unknown name raises `ModelSpecError` listing
    close names.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ModelSpecError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ModelSpecError(f"in_chans must be a positive int, got {in_chans!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 16:
        raise ModelSpecError(f"width must be a number in (0, 16], got {width!r}")
    match = _MINI.match(name)
    if match:
        if "bottlenecks" in kwargs:
            raise ModelSpecError(f"'{name}' already names its bottleneck count; drop "
                                 f"bottlenecks={kwargs['bottlenecks']}")
        return mini_mobilenet(num_classes, in_chans, width, bottlenecks=int(match.group(1)), **kwargs)
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ModelSpecError(
            f"unknown reference model '{name}'.{hint}{_library_hint(name)} Reference models: "
            f"{', '.join(list_models())}; other models: timm:NAME, tv:NAME or pkg.module:factory"
        )
    try:
        return _MODELS[name](num_classes, in_chans, width, **kwargs)
    except TypeError as e:
        raise ModelSpecError(f"reference model '{name}' does not take these arguments: {e}") from e


def _library_hint(name: str) -> str:
    """`` Did you mean timm:NAME or tv:NAME?`` for the spellings of ``name`` that timm and torchvision know."""
    import timm
    import torchvision

    found = [f"timm:{name}"] if timm.is_model(name) else []
    found += [f"tv:{name}"] if name in torchvision.models.list_models() else []
    return f" Did you mean {' or '.join(found)}?" if found else ""
