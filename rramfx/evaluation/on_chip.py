"""Accuracy on one given chip: a tested chip's measured fault map, or a synthetic one (`rramfx.Chip`).

Where `rramfx.monte_carlo` draws many chips from a fault model, `evaluate_on_chip` answers "how does my
model do on *this* chip": the model's RRAM layers are mapped onto the chip's arrays (the naive mapping
of `rramfx.crossbar_map`, or a fault-aware one), each weight reads its cells through the chip's encoding, and the read
weights are computed once for the whole test set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import fx

from rramfx.crossbar.chip import apply_chip, apply_chip_fault_rate, chip_fault_rate, crossbar_layers
from rramfx.crossbar.chipfile import Chip
from rramfx.crossbar.mapping import AwareMap
from rramfx.errors import ArgumentTypeError, PlacementError
from rramfx.evaluation.chips import _baked, _unbake, evaluate
from rramfx.graph.modules import eval_mode

__all__ = ["evaluate_on_chip"]


def evaluate_on_chip(gm: fx.GraphModule, chip: Chip, loader: Iterable[Any], *,
                     fault_rate: float | str | None = None, mapping: AwareMap | str | None = None) -> float:
    """Top-1 accuracy of the prepared model ``gm`` on ``chip`` over ``loader``.

    ``fault_rate`` is the p' whose 1/(1-p') scale the read weights get (None: the model's own;
    ``"measured"``: each layer's own loss on this chip and mapping, see
    `rramfx.crossbar.chip.measured_fault_rates`, the rule to use with a fault-aware mapping). A chip
    with no stuck cell gives the accuracy of the encoding alone (for ``bit_sliced``, quantisation
    alone: see `rramfx.Chip.healthy`). ``gm`` is returned as it was given (weights, applied chip, p',
    train/eval flags). A model needing more arrays than the chip has raises `rramfx.FaultError` saying
    how many it needs. ``mapping``: None or ``"naive"`` (layers on arrays 0, 1, ... in module order),
    ``"aware"`` (placed around the chip's stuck cells by `rramfx.crossbar.aware.fault_aware_map`), or such
    a mapping made before (to time or reuse it)."""
    if not isinstance(chip, Chip):
        raise ArgumentTypeError(f"evaluate_on_chip: chip must be an rramfx.Chip, got {type(chip).__name__}")
    layers = crossbar_layers(gm)
    if not layers:
        raise PlacementError("evaluate_on_chip: this model has no crossbar (RRAM) layers to put on the chip; "
                             "prepare it with rramfx.prepare and place at least one layer on 'rram'")
    p_prime = chip_fault_rate("evaluate_on_chip", fault_rate)
    saved = {path: (m.fault_codes, m.fault_model, m.fault_rate) for path, m in layers.items()}
    try:
        apply_chip(gm, chip, mapping)
        apply_chip_fault_rate(gm, p_prime)
        with eval_mode(gm), torch.no_grad():
            swapped = _baked(layers, {})  # every read weight once, not once per batch
            try:
                return evaluate(gm, loader)
            finally:
                _unbake(swapped)
    finally:
        for path, m in layers.items():
            m.fault_codes, m.fault_model, m.fault_rate = saved[path]
