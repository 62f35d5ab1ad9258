"""`ModelRecipe`: how to build one untrained model, and the toolkit's one width rule.

A width multiplier reaches a model in one of two ways. A reference model (a spec without
``prefix:``, `rramfx.models.registry`) takes ``width`` and is *built* that wide: its constructor scales
every channel count, as the papers' widened networks are. Any other model (``timm:``, ``tv:``,
``pkg.module:factory``) is built as its factory makes it and *widened* afterwards by the policy's
``widen`` pass (`rramfx.passes.widen`), which needs example inputs to read tensor shapes. Every
command and the sweep ask `ModelRecipe` instead of deciding this themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from rramfx.models.spec import create_model, is_reference_spec
from rramfx.policy import Policy

__all__ = ["ModelRecipe"]


@dataclass(frozen=True)
class ModelRecipe:
    """A model spec (``resnet20``, ``timm:NAME``, ...), its output classes and input channels, and the
    channel multiplier ``width``. Plain data, so it can key an experiment cell and travel to a worker."""

    spec: str
    num_classes: int = 10
    in_chans: int = 3
    width: float = 1.0

    @property
    def reference(self) -> bool:
        """True for a reference model, which is built ``width`` wide (see the module docstring)."""
        return is_reference_spec(self.spec)

    def model_kwargs(self) -> dict[str, Any]:
        """The arguments `create_model` gets, which a saved model records to be rebuilt from: classes,
        channels, and ``width`` for a reference model that is not width 1."""
        kwargs: dict[str, Any] = {"num_classes": self.num_classes, "in_chans": self.in_chans}
        if self.width != 1.0 and self.reference:
            kwargs["width"] = self.width
        return kwargs

    def policy(self, base: Policy) -> Policy:
        """``base`` with ``widen`` set to ``width`` for a model that is not built wide (unchanged for a
        reference model or width 1), so that prepare widens what the constructor did not."""
        if self.width == 1.0 or self.reference:
            return base
        return Policy.from_dict({**base.to_dict(), "widen": self.width})

    def create(self) -> nn.Module:
        """A fresh, untrained instance (initialised from torch's global generator: seed it first)."""
        return create_model(self.spec, **self.model_kwargs())
