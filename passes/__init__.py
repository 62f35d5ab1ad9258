"""torch.fx passes: ``GraphModule -> GraphModule``, each returning a new module and leaving its input
as it was. One pass per file; the ``name_`` forms edit in place for pipelines that own their copy.

Structural passes (change the network): `replace_with_bottleneck`, `pad_1x1_to_3x3`, `widen_channels`.
Placement and crossbar passes: `assign_devices`, `to_crossbar`. `compose` chains any of them.
"""

from rramfx.passes.bottleneck import LinearBottleneck, replace_with_bottleneck
from rramfx.passes.crossbar import to_crossbar
from rramfx.passes.devices import assign_devices, placement_for, rule_device
from rramfx.passes.pad_1x1 import pad_1x1_to_3x3
from rramfx.passes.pipeline import Pipeline, compose
from rramfx.passes.widen import widen_channels

__all__ = [
    "LinearBottleneck",
    "Pipeline",
    "assign_devices",
    "compose",
    "pad_1x1_to_3x3",
    "placement_for",
    "replace_with_bottleneck",
    "rule_device",
    "to_crossbar",
    "widen_channels",
]
