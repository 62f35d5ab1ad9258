"""What one inference of a prepared model costs on an RRAM accelerator and its host, and the check
against the paper's Table II."""

from rramfx.cost.estimate import CostReport, Hardware, estimate_cost

__all__ = [
    "CostReport",
    "Hardware",
    "estimate_cost",
]
