"""Values the analysis attaches to graph nodes: tensor layouts, hazards, barriers, layer uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rramfx.channels.spaces import Layout

__all__ = ["TV", "Barrier", "Hazard", "ModuleUse"]


@dataclass
class TV:
    """A tensor value: its shape and one layout per dimension."""

    shape: tuple[int, ...]
    dims: list[Layout]


@dataclass
class Hazard:
    """An operation that would change its result if the channels of ``layout`` were duplicated.
    ``uniform_ok``: it is exact when every space in the layout is duplicated the same whole number of
    times (means, norms over channels).

    ``remedy`` names how the widening pass can still keep the output exact when it preserves the
    function (``"weights"``: the statistics weight each copy by 1/copies; ``"gather"``: the operation
    runs on the original channels and its result is copied), and ``data`` what the remedy needs; the
    hazards of one node share one ``data`` object."""

    node: str
    what: str
    layout: Layout
    uniform_ok: bool
    remedy: str | None = None
    data: Any = None


@dataclass
class Barrier:
    """An operation the analysis cannot see through; the spaces it touches cannot be widened."""

    node: str
    what: str
    layouts: list[Layout]


@dataclass
class ModuleUse:
    """How a layer module's channels are laid out (the same for every call of a shared module)."""

    path: str
    kind: str  # conv | linear | bn | gn | ln | prelu
    layouts: dict[str, Layout] = field(default_factory=dict)
