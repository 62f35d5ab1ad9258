"""ONNX export with per-node rramfx metadata and fault masks, partitioning into crossbar and host
segments, inspection, and Monte-Carlo simulation in onnxruntime."""

from rramfx.errors import OnnxError
from rramfx.onnx.chip_export import export_on_chip
from rramfx.onnx.chip_sessions import bake_read_weights, read_weight_graph
from rramfx.onnx.export import export_onnx
from rramfx.onnx.feed import onnx_fault_inputs
from rramfx.onnx.inspect import inspect_onnx
from rramfx.onnx.partition import partition_onnx, run_partitioned
from rramfx.onnx.plan import Plan
from rramfx.onnx.simulate import OrtMonteCarloResult, ort_monte_carlo

__all__ = [
    "OnnxError",
    "OrtMonteCarloResult",
    "Plan",
    "bake_read_weights",
    "export_on_chip",
    "export_onnx",
    "inspect_onnx",
    "onnx_fault_inputs",
    "ort_monte_carlo",
    "partition_onnx",
    "read_weight_graph",
    "run_partitioned",
]
