"""rramfx: prepare deep networks for fault-prone RRAM crossbar accelerators.

``rramfx.prepare(model, policy)`` traces any ``nn.Module`` with torch.fx, places every convolution and
linear layer on the RRAM crossbar or the host by kernel size, and turns the RRAM layers into crossbar
layers that train with DropConnect and evaluate under simulated stuck-at faults.
"""

from . import passes
from .chip import apply_faults, clear_faults, crossbar_layers, inject_faults, set_drop_rate, set_fault_rate
from .errors import FaultError, PlacementError, PolicyError, RramfxError, TraceError
from .faults import SA0, SA1, BaseFaultModel, FaultModel, FaultSet, register_fault_model
from .graph import weighted_layers
from .layers import CrossbarLayer
from .placement import placement, summary
from .policy import Policy
from .prepare import prepare
from .tracing import trace

__version__ = "0.1.0"


def param_count(model) -> int:
    """Number of parameters of a model (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "SA0",
    "SA1",
    "BaseFaultModel",
    "CrossbarLayer",
    "FaultError",
    "FaultModel",
    "FaultSet",
    "PlacementError",
    "Policy",
    "PolicyError",
    "RramfxError",
    "TraceError",
    "__version__",
    "apply_faults",
    "clear_faults",
    "crossbar_layers",
    "inject_faults",
    "param_count",
    "passes",
    "placement",
    "prepare",
    "register_fault_model",
    "set_drop_rate",
    "set_fault_rate",
    "summary",
    "trace",
    "weighted_layers",
]
