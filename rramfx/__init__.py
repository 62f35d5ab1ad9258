"""rramfx: prepare deep networks for fault-prone RRAM crossbar accelerators.

``rramfx.prepare(model, policy)`` traces any ``nn.Module`` with torch.fx, places every convolution and
linear layer on the RRAM crossbar or the host by kernel size, and turns the RRAM layers into crossbar
layers that train with DropConnect and evaluate under simulated stuck-at faults.
"""

from rramfx import data, models, passes
from rramfx.cost.estimate import CostReport, estimate_cost
from rramfx.crossbar.aware import fault_aware_map
from rramfx.crossbar.cellfaults import CellFaults
from rramfx.crossbar.chip import (
    apply_chip,
    apply_faults,
    clear_faults,
    crossbar_layers,
    inject_faults,
    set_drop_rate,
    set_fault_rate,
)
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.faults import SA0, SA1, BaseFaultModel, FaultModel, FaultSet, chip_seed, register_fault_model
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.crossbar.mapping import AwareMap, CrossbarMap, crossbar_map
from rramfx.crossbar.patterns import Clustered, Independent, Lines
from rramfx.errors import (
    ArgumentError,
    ArgumentTypeError,
    CellsFailedError,
    CostError,
    DataError,
    DataFileError,
    FaultError,
    FaultSetFileError,
    FileFormatError,
    ModelFileError,
    ModelSpecError,
    NotPreparedError,
    OnnxError,
    OnnxFileError,
    PassError,
    PlacementError,
    PolicyError,
    PolicyFileError,
    ReportError,
    ResultsFileError,
    RramfxError,
    SensitivityError,
    SweepError,
    TraceError,
    TrainError,
    UnknownLayerError,
)
from rramfx.evaluation.chips import MonteCarloResult, evaluate, monte_carlo
from rramfx.evaluation.on_chip import evaluate_on_chip
from rramfx.evaluation.recalibrate import recalibrate_bn
from rramfx.experiment.grid import SweepConfig, sweep
from rramfx.experiment.report import write_report
from rramfx.graph.modules import weighted_layers
from rramfx.graph.placement_report import placement, summary
from rramfx.graph.tracing import trace
from rramfx.onnx.chip_export import export_on_chip
from rramfx.onnx.export import export_onnx
from rramfx.onnx.feed import onnx_fault_inputs
from rramfx.onnx.inspect import inspect_onnx
from rramfx.onnx.partition import partition_onnx, run_partitioned
from rramfx.onnx.plan import Plan
from rramfx.onnx.simulate import OrtMonteCarloResult, ort_monte_carlo
from rramfx.policy import Policy
from rramfx.preparation import prepare
from rramfx.search.greedy_placement import PlacementSearch, search_placement
from rramfx.search.layer_sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    pinned_policy,
    sensitivity,
)
from rramfx.training.loop import train
from rramfx.training.saved import load_prepared, save_prepared
from rramfx.version import __version__


def param_count(model) -> int:
    """Number of parameters of a model (shared parameters once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "SA0",
    "SA1",
    "ArgumentError",
    "ArgumentTypeError",
    "AwareMap",
    "BaseFaultModel",
    "CellFaults",
    "CellsFailedError",
    "Chip",
    "Clustered",
    "CostError",
    "CostReport",
    "CrossbarLayer",
    "CrossbarMap",
    "DataError",
    "DataFileError",
    "FaultError",
    "FaultModel",
    "FaultSet",
    "FaultSetFileError",
    "FileFormatError",
    "Hardware",
    "Independent",
    "LayerSensitivity",
    "Lines",
    "ModelFileError",
    "ModelSpecError",
    "MonteCarloResult",
    "NotPreparedError",
    "OnnxError",
    "OnnxFileError",
    "OrtMonteCarloResult",
    "PassError",
    "PlacementError",
    "PlacementSearch",
    "Plan",
    "Policy",
    "PolicyError",
    "PolicyFileError",
    "ReportError",
    "ResultsFileError",
    "RramfxError",
    "SensitivityError",
    "SensitivityReport",
    "SweepConfig",
    "SweepError",
    "TraceError",
    "TrainError",
    "UnknownLayerError",
    "__version__",
    "apply_chip",
    "apply_faults",
    "chip_seed",
    "clear_faults",
    "crossbar_layers",
    "crossbar_map",
    "data",
    "estimate_cost",
    "evaluate",
    "evaluate_on_chip",
    "export_on_chip",
    "export_onnx",
    "fault_aware_map",
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
