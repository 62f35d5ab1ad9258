"""Which layers to place on RRAM: per-layer fault sensitivity and a greedy placement search under an
accuracy budget."""

from rramfx.search.greedy_placement import PlacementSearch, search_placement
from rramfx.search.layer_sensitivity import (
    LayerSensitivity,
    SensitivityError,
    SensitivityReport,
    pinned_policy,
    sensitivity,
)

__all__ = [
    "LayerSensitivity",
    "PlacementSearch",
    "SensitivityError",
    "SensitivityReport",
    "pinned_policy",
    "search_placement",
    "sensitivity",
]
