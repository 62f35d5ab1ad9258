"""rramfx: prepare deep networks for fault-prone RRAM crossbar accelerators.

``rramfx.prepare(model, policy)`` traces any ``nn.Module`` with torch.fx, places every convolution and
linear layer on the RRAM crossbar or the host by kernel size, and turns the RRAM layers into crossbar
layers that train with DropConnect and evaluate under simulated stuck-at faults.
"""

from . import data, models, passes
from .chip import apply_faults, clear_faults, crossbar_layers, inject_faults, set_drop_rate, set_fault_rate
from .cost import CostReport, Hardware, estimate_cost
from .errors import CostError, FaultError, PassError, PlacementError, PolicyError, RramfxError, TraceError
from .faults import SA0, SA1, BaseFaultModel, FaultModel, FaultSet, chip_seed, register_fault_model
from .graph import weighted_layers
from .layers import CrossbarLayer
from .monte_carlo import MonteCarloResult, evaluate, monte_carlo
from .onnx_export import export_onnx, onnx_fault_inputs
from .onnx_inspect import inspect_onnx
from .onnx_meta import OnnxError
from .onnx_partition import Plan, partition_onnx, run_partitioned
from .onnx_sim import OrtMonteCarloResult, ort_monte_carlo
from .placement import placement, summary
from .placement_search import PlacementSearch, search_placement
from .policy import Policy
from .prepare import prepare
from .recalibrate import recalibrate_bn
from .report import write_report
from .sensitivity import LayerSensitivity, SensitivityError, SensitivityReport, pinned_policy, sensitivity
from .sweep import SweepConfig, sweep
from .tracing import trace
from .train import load_prepared, save_prepared, train

__version__ = "0.1.0"


def param_count(model) -> int:
    """Number of parameters of a model (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "SA0",
    "SA1",
    "BaseFaultModel",
    "CostError",
    "CostReport",
    "CrossbarLayer",
    "FaultError",
    "FaultModel",
    "FaultSet",
    "Hardware",
    "LayerSensitivity",
    "MonteCarloResult",
    "OnnxError",
    "OrtMonteCarloResult",
    "PassError",
    "PlacementError",
    "PlacementSearch",
    "Plan",
    "Policy",
    "PolicyError",
    "RramfxError",
    "SensitivityError",
    "SensitivityReport",
    "SweepConfig",
    "TraceError",
    "__version__",
    "apply_faults",
    "chip_seed",
    "clear_faults",
    "crossbar_layers",
    "data",
    "estimate_cost",
    "evaluate",
    "export_onnx",
    "inject_faults",
    "inspect_onnx",
    "load_prepared",
    "models",
    "monte_carlo",
    "onnx_fault_inputs",
    "ort_monte_carlo",
    "param_count",
    "partition_onnx",
    "passes",
    "pinned_policy",
    "placement",
    "prepare",
    "recalibrate_bn",
    "register_fault_model",
    "run_partitioned",
    "save_prepared",
    "search_placement",
    "sensitivity",
    "set_drop_rate",
    "set_fault_rate",
    "summary",
    "sweep",
    "trace",
    "train",
    "weighted_layers",
    "write_report",
]
