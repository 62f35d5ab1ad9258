"""Putting a prepared model on a simulated chip: inject, apply and clear stuck-at faults, and set the
expected fault rate p' that scales RRAM weights in faulty inference.

These functions change the prepared model they are given, on purpose: a GraphModule with a chip
applied is the thing one evaluates. The user's original model is never involved.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from rramfx.checks import unit_rate
from rramfx.crossbar.aware import fault_aware_map
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.faults import BaseFaultModel, FaultSet, draw_fault_set
from rramfx.crossbar.layers import CrossbarLayer
from rramfx.crossbar.mapping import AwareMap
from rramfx.errors import ArgumentError, ArgumentTypeError, FaultError, NotPreparedError, PlacementError

__all__ = [
    "apply_chip",
    "apply_chip_fault_rate",
    "apply_faults",
    "chip_fault_rate",
    "chip_faults",
    "clear_faults",
    "crossbar_layers",
    "inject_faults",
    "measured_fault_rates",
    "set_drop_rate",
    "set_fault_rate",
]


def crossbar_layers(gm: fx.GraphModule) -> dict[str, CrossbarLayer]:
    """Module path → crossbar layer, for every RRAM layer of a prepared model."""
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(f"gm must be a prepared torch.fx.GraphModule (what rramfx.prepare returns), "
                               f"got {type(gm).__name__}")
    return {path: m for path, m in gm.named_modules() if isinstance(m, CrossbarLayer)}


def _require_crossbar(gm: fx.GraphModule) -> dict[str, CrossbarLayer]:
    layers = crossbar_layers(gm)
    if not layers:
        raise PlacementError(
            "this model has no crossbar (RRAM) layers: prepare it with rramfx.prepare(model, policy), "
            "and check rramfx.placement(gm) puts at least one layer on 'rram'"
        )
    return layers


def inject_faults(gm: fx.GraphModule, fault_model: BaseFaultModel, seed: int = 0) -> FaultSet:
    """Draw one simulated chip for ``gm``'s RRAM layers from ``seed``, apply it and return it.

    Only crossbar layers receive faults. The same seed gives the same chip on any machine and device.
    """
    if not isinstance(fault_model, BaseFaultModel):
        raise ArgumentTypeError(f"fault_model must be an rramfx.FaultModel, got {type(fault_model).__name__}")
    faults = draw_fault_set(_require_crossbar(gm), fault_model, seed)
    apply_faults(gm, faults)
    return faults


def apply_faults(gm: fx.GraphModule, faults: FaultSet) -> None:
    """Put ``gm`` on the chip ``faults``: its layers get these codes, every other RRAM layer is healthy.

    Checked before anything changes: every path must be an RRAM layer of ``gm`` with the same weight shape.
    """
    if not isinstance(faults, FaultSet):
        raise ArgumentTypeError(f"faults must be an rramfx.FaultSet, got {type(faults).__name__}")
    layers = _require_crossbar(gm)
    for path, codes in faults.items():
        if path not in layers:
            raise FaultError(
                f"fault set has codes for '{path}', which is not an RRAM layer of this model "
                f"(its RRAM layers: {', '.join(list(layers)[:8])}{', ...' if len(layers) > 8 else ''})"
            )
        expected = faults.fault_model.codes_shape(tuple(layers[path].weight.shape))
        if tuple(codes.shape) != expected:
            raise FaultError(
                f"fault codes for '{path}' have shape {tuple(codes.shape)}, its weight "
                f"{tuple(layers[path].weight.shape)} needs {expected}: the fault set was drawn for another model"
            )
    for path, layer in layers.items():
        if path in faults:
            layer.fault_codes = faults[path].to(layer.weight.device)
            layer.fault_model = faults.fault_model
        else:
            layer.fault_codes = None
            layer.fault_model = None


def chip_faults(gm: fx.GraphModule, chip: Chip, mapping: AwareMap | str | None = None) -> FaultSet:
    """The `FaultSet` ``gm``'s RRAM layers meet on the tested chip ``chip`` (`rramfx.Chip`), without
    applying it. With ``mapping`` None or ``"naive"`` the layers take the chip's arrays in module order
    (`rramfx.crossbar_map`); ``"aware"`` places them with `rramfx.crossbar.aware.fault_aware_map`, or pass
    such a mapping. A model needing more arrays than the chip has raises `FaultError` saying how many."""
    if not isinstance(chip, Chip):
        raise ArgumentTypeError(f"chip must be an rramfx.Chip, got {type(chip).__name__}")
    layers = _require_crossbar(gm)
    if isinstance(mapping, str):
        if mapping not in ("naive", "aware"):
            raise ArgumentError(f"mapping must be 'naive', 'aware', None or an AwareMap, got {mapping!r}")
        mapping = fault_aware_map(layers, chip) if mapping == "aware" else None
    return chip.fault_set(layers, mapping)


def apply_chip(gm: fx.GraphModule, chip: Chip, mapping: AwareMap | str | None = None) -> FaultSet:
    """Put ``gm`` on the tested chip ``chip`` (see `chip_faults` for ``mapping``) and return the
    `FaultSet` applied: each weight reads its cells through the chip's encoding."""
    faults = chip_faults(gm, chip, mapping)
    apply_faults(gm, faults)
    return faults


def clear_faults(gm: fx.GraphModule) -> None:
    """Make every RRAM layer healthy again: eval output is again exactly the fault-free output."""
    for layer in crossbar_layers(gm).values():
        layer.fault_codes = None
        layer.fault_model = None


def set_fault_rate(gm: fx.GraphModule, fault_rate: float) -> None:
    """Set the expected fault rate p' whose 1/(1-p') scale faulty RRAM layers apply in eval."""
    fault_rate = unit_rate("fault_rate", fault_rate)
    for layer in _require_crossbar(gm).values():
        layer.fault_rate = fault_rate


def chip_fault_rate(caller: str, fault_rate: Any) -> float | str | None:
    """The checked p' argument of a function that puts a model on a known chip: None (the model's own),
    a rate in [0, 1), or ``"measured"`` (`measured_fault_rates`)."""
    if fault_rate is None or fault_rate == "measured":
        return fault_rate
    if isinstance(fault_rate, str):
        raise ArgumentError(f"{caller}: fault_rate must be a number in [0, 1), None or 'measured', got {fault_rate!r}")
    return unit_rate("fault_rate", fault_rate)


def apply_chip_fault_rate(gm: fx.GraphModule, fault_rate: float | str | None) -> None:
    """Give the RRAM layers of ``gm``, on a chip already, the p' of a `chip_fault_rate` argument: None
    keeps each layer's own, a number sets every layer's, ``"measured"`` each faulty layer's own loss."""
    if fault_rate is None:
        return
    layers = _require_crossbar(gm)
    rates = measured_fault_rates(gm) if fault_rate == "measured" else dict.fromkeys(layers, fault_rate)
    for path, layer in layers.items():
        layer.fault_rate = rates.get(path, layer.fault_rate)


def measured_fault_rates(gm: fx.GraphModule) -> dict[str, float]:
    """Each faulty RRAM layer's p' measured on the chip it is on: the fraction of the layer's weight
    magnitude that its stuck cells take away, sum(max(|w| - |read w|, 0)) / sum(|w|), read without scale.

    The 1/(1-p') scale stands in for the weight a chip loses; under the naive mapping of independent
    SA1 cells this is the SA1 rate the paper uses, but a fault-aware mapping puts stuck cells under
    small weights and loses far less, so a rate-based p' over-scales it. Healthy layers are left out."""
    rates = {}
    with torch.no_grad():
        for path, layer in _require_crossbar(gm).items():
            if layer.fault_codes is None:
                continue
            w = layer.weight.detach()
            read = layer.fault_model.read_weight(w, layer.fault_codes, 1.0)
            total = float(w.abs().sum())
            lost = float((w.abs() - read.abs()).clamp_min_(0).sum())
            rates[path] = min(lost / total, 0.99) if total > 0 else 0.0
    return rates


def set_drop_rate(gm: fx.GraphModule, drop_rate: float) -> None:
    """Set the DropConnect rate p that RRAM layers apply in training (e.g. p' for BN recalibration)."""
    drop_rate = unit_rate("drop_rate", drop_rate)
    for layer in _require_crossbar(gm).values():
        layer.drop_rate = drop_rate
