"""Model specifications as text, so the CLI and config files can name any model:

- ``timm:NAME``   a timm model (``NAME.TAG`` as timm spells them), created with ``pretrained=False``
  unless ``pretrained_file=`` names a local weights file;
- ``tv:NAME``     a torchvision model, created with ``weights=None``;
- ``pkg.module:factory``  any importable callable returning an ``nn.Module``;
- ``NAME``        one of rramfx's reference models (`rramfx.models.registry`).
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any

from torch import nn

from rramfx.errors import ModelFileError, ModelSpecError
from rramfx.models.registry import create

__all__ = ["ModelSpecError", "create_model", "is_reference_spec"]


def is_reference_spec(spec: str) -> bool:
    """True when ``spec`` names a reference model (no ``prefix:``): such a model takes ``width`` and is
    built wide, while any other model is widened by the policy's ``widen`` pass (`ModelRecipe`)."""
    return not spec.partition(":")[2]


def create_model(spec: str, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Create the model named by ``spec`` (see the module docstring) with fresh weights."""
    if not isinstance(spec, str) or not spec:
        raise ModelSpecError(f"a model spec must be a non-empty string, got {spec!r}")
    if is_reference_spec(spec):
        return _reference(spec, num_classes, in_chans, **kwargs)
    prefix, _, name = spec.partition(":")
    if prefix == "timm":
        return _timm(name, num_classes, in_chans, **kwargs)
    if prefix in ("tv", "torchvision"):
        return _torchvision(name, num_classes, in_chans, **kwargs)
    return _factory(prefix, name, num_classes, in_chans, **kwargs)


def _timm(name: str, num_classes: int, in_chans: int, pretrained_file: str | None = None,
          **kwargs: Any) -> nn.Module:
    """A timm model by timm's own rules: ``NAME`` or ``NAME.TAG`` (``resnet18.a1_in1k``) as
    `timm.is_model` accepts it; ``pretrained_file``: a local weights file read through timm's
    pretrained config (``pretrained_cfg_overlay=dict(file=...)``), so timm adapts the classifier and
    input channels as it does for its hub weights."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ModelSpecError(f"unknown timm model 'timm:{name}'.{hint}")
    if pretrained_file is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if not Path(pretrained_file).is_file():
        raise ModelFileError(f"--pretrained file '{pretrained_file}' does not exist")
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)},
                                 num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"timm cannot load --pretrained file '{pretrained_file}' into timm:{name}: {e}") from None


def _torchvision(name: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ModelSpecError(f"unknown torchvision model 'tv:{name}'.{hint}")
    if in_chans != 3:
        raise ModelSpecError(f"torchvision model 'tv:{name}' takes 3 input channels, asked for {in_chans}")
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def _factory(module_name: str, attr: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelSpecError(
            f"cannot import '{module_name}' for model spec '{module_name}:{attr}' ({e}); "
            "use timm:NAME, tv:NAME or an importable pkg.module:factory"
        ) from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelSpecError(f"'{module_name}' has no callable '{attr}' (model spec '{module_name}:{attr}')")
    model = factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"'{module_name}:{attr}' returned {type(model).__name__}, not an nn.Module")
    return model


def _reference(name: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    return create(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
