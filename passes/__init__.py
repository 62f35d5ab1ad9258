"""torch.fx passes: ``GraphModule -> GraphModule``, each returning a new module and leaving its input
as it was. One pass per file; the ``name_`` forms edit in place for pipelines that own their copy."""

from .assign_devices import assign_devices, placement_for, rule_device
from .to_crossbar import to_crossbar

__all__ = ["assign_devices", "placement_for", "rule_device", "to_crossbar"]
