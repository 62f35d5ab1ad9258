"""The torch.fx graph of a model: tracing it, the toolkit's record kept on it, questions about its
modules, shapes and topology, the RRAM/CPU placement read back from it, and MAC counting."""

from rramfx.graph.mac_count import count_macs
from rramfx.graph.modules import (
    WEIGHTED_TYPES,
    effective_weight,
    is_conv,
    is_weighted,
    kernel_taps,
    module_device,
    set_scaled_std_weight,
    set_submodule,
    standardisation,
    weighted_layers,
)
from rramfx.graph.placement_report import placement, summary
from rramfx.graph.record import copy_graph_module, require_meta, rramfx_meta
from rramfx.graph.shapes import as_args, shape_prop, tensor_meta
from rramfx.graph.topology import conv_nodes, is_residual_add, shortcut_convs
from rramfx.graph.tracing import check_traced_equal, trace

__all__ = [
    "WEIGHTED_TYPES",
    "as_args",
    "check_traced_equal",
    "conv_nodes",
    "copy_graph_module",
    "count_macs",
    "effective_weight",
    "is_conv",
    "is_residual_add",
    "is_weighted",
    "kernel_label",
    "kernel_taps",
    "module_device",
    "placement",
    "require_meta",
    "rramfx_meta",
    "set_scaled_std_weight",
    "set_submodule",
    "shape_prop",
    "shortcut_convs",
    "standardisation",
    "summary",
    "tensor_meta",
    "trace",
    "weighted_layers",
]
