"""The crossbar: the hardware description (arrays, cells per weight, performance figures), how a
layer's weight unrolls onto arrays, the fault models and fault sets a chip
is drawn from, the mapping of weights onto arrays, weight encodings, fault patterns on cells, tested
chips and their files, the DropConnect crossbar layers, and the operations that put faults on a prepared model."""

from rramfx.crossbar.aware import fault_aware_map
from rramfx.crossbar.cellfaults import CellFaults
from rramfx.crossbar.chip import (
    apply_chip,
    apply_faults,
    clear_faults,
    crossbar_layers,
    inject_faults,
    measured_fault_rates,
    set_drop_rate,
    set_fault_rate,
)
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.faults import (
    SA0,
    SA1,
    BaseFaultModel,
    FaultModel,
    FaultSet,
    chip_seed,
    draw_fault_set,
    layer_rng,
    register_fault_model,
)
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.layers import CrossbarLayer, to_crossbar_layer, to_plain_layer
from rramfx.crossbar.mapping import AwareMap, CrossbarMap, LayerMap, crossbar_map
from rramfx.crossbar.patterns import BasePattern, Clustered, Independent, Lines, register_pattern
from rramfx.crossbar.tiling import geometry, macs, tiles_for, weight_fan

__all__ = [
    "SA0",
    "SA1",
    "AwareMap",
    "BaseFaultModel",
    "BasePattern",
    "CellFaults",
    "Chip",
    "Clustered",
    "CrossbarLayer",
    "CrossbarMap",
    "FaultModel",
    "FaultSet",
    "Hardware",
    "Independent",
    "LayerMap",
    "Lines",
    "apply_chip",
    "apply_faults",
    "chip_seed",
    "clear_faults",
    "crossbar_layers",
    "crossbar_map",
    "draw_fault_set",
    "fault_aware_map",
    "geometry",
    "inject_faults",
    "layer_rng",
    "macs",
    "measured_fault_rates",
    "register_fault_model",
    "register_pattern",
    "set_drop_rate",
    "set_fault_rate",
    "tiles_for",
    "to_crossbar_layer",
    "to_plain_layer",
    "weight_fan",
]
