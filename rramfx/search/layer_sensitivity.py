"""Per-layer fault sensitivity: how much accuracy a trained model loses when one layer, and only that
layer, sits on a faulty RRAM crossbar.

The question behind it is placement: the kernel-size rule is a good default, but a given trained model
may tolerate faults in some host layers (so they could move to RRAM and save host time) and suffer
from faults in some k×k layers. Every weighted layer is measured, host layers included ("what if this
layer moved to RRAM?"), on a *working copy* of the model re-placed with the toolkit's own passes
(`assign_devices` with every layer pinned by an override, then `to_crossbar`, which converts plain
layers to crossbar layers and back): the measured layer is the only crossbar layer, every other layer
computes exactly its fault-free function. The caller's model is never changed.

All layers are measured on the same chips: chip ``i`` is drawn from ``chip_seed(seed, i)`` and a
layer's faults depend only on that seed and its module path, so a layer gets on chip ``i`` exactly the
faults it gets when the whole placement is evaluated on chip ``i`` (see `rramfx.faults.layer_rng`).
Rankings are therefore not blurred by different chips, and `rramfx.search_placement` reuses them.
"""

from __future__ import annotations

import difflib
import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from rramfx.checks import unit_rate
from rramfx.crossbar.faults import BaseFaultModel, FaultModel
from rramfx.errors import ArgumentTypeError, SensitivityError, UnknownLayerError
from rramfx.evaluation.chips import BatchCache, MonteCarloResult, check_chip_args, evaluate, monte_carlo
from rramfx.graph.modules import kernel_label, module_device
from rramfx.graph.placement_report import placement
from rramfx.policy import Policy
from rramfx.search.working_copy import (
    CACHE_BYTES,
    first_inputs,
    layer_macs,
    mac_share,
    pinned_policy,
    place_,
    working_copy,
)
from rramfx.tables import table_lines

# ---- argument checks -----------------------------------------------------------------------------


def check_search_args(gm: Any, loader: Any, fault_model: Any, trials: Any, seed: Any, fault_rate: Any,
                      what: str) -> float:
    """Validate the arguments that `sensitivity` and `search_placement` share with `monte_carlo`, raising
    `SensitivityError` naming ``what``; returns the p' to scale faulty weights with (``fault_rate``, or
    the fault model's SA1 rate as the sweep chooses)."""
    check_chip_args(what, gm, fault_model, trials, seed)
    if isinstance(loader, (str, bytes, torch.Tensor)) or not isinstance(loader, Iterable):
        raise ArgumentTypeError(f"loader must be a re-iterable of (inputs, labels) batches, "
                                f"got {type(loader).__name__}")
    if fault_rate is not None:
        return unit_rate("fault_rate", fault_rate)
    if isinstance(fault_model, FaultModel):
        return fault_model.sa1  # the sweep's choice: p' is the SA1 rate
    raise SensitivityError(
        f"fault_rate (p', the 1/(1-p') scale of faulty weights) must be given for a {type(fault_model).__name__}: "
        "only a FaultModel has an SA1 rate to default it to"
    )


def _select_layers(layers: Iterable[str] | str | None, paths: Sequence[str]) -> list[str]:
    """The measured layers in module order: all of ``paths``, or those matching ``layers`` (paths or
    fnmatch globs, each of which must match at least one weighted layer)."""
    if layers is None:
        return list(paths)
    try:
        patterns = [layers] if isinstance(layers, str) else list(layers)
    except TypeError:
        raise SensitivityError(f"layers must be a list of module paths or globs, got {layers!r}") from None
    if not patterns:
        raise SensitivityError("layers must name at least one layer (None: every weighted layer)")
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise SensitivityError(f"layers must be module paths or globs, got {pattern!r}")
        matched = [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
        if not matched:
            close = difflib.get_close_matches(pattern, list(paths), n=5, cutoff=0.5)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise SensitivityError(f"layers: {pattern!r} matches no weighted layer of this model.{hint}")
        chosen.update(matched)
    return [p for p in paths if p in chosen]


# ---- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer alone on faulty chips: its Monte-Carlo ``result`` and ``drop`` = fault-free accuracy
    minus the mean over chips (fractions; negative when faults happen to help). ``device`` is where
    the model's current placement puts it, ``macs`` its multiply-accumulates per sample."""

    path: str
    kernel: str
    device: str
    macs: int
    drop: float
    result: MonteCarloResult

    @property
    def accuracy(self) -> float:
        """Mean accuracy over the chips with this layer alone on faulty RRAM."""
        return self.result.mean

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready), the chip accuracies included."""
        return {"path": self.path, "kernel": self.kernel, "device": self.device, "macs": self.macs,
                "accuracy": self.accuracy, "std": self.result.std, "drop": self.drop,
                "accuracies": list(self.result.accuracies)}


@dataclass(frozen=True)
class SensitivityReport:
    """Fault sensitivity of every measured layer, ``layers`` ordered by drop (largest first, ties in
    module order). Accuracies are fractions; ``fault_rate`` is the p' used for the faulty layer."""

    clean_accuracy: float
    layers: tuple[LayerSensitivity, ...]
    fault_model: dict[str, Any]
    fault_rate: float
    trials: int
    seed: int
    samples: int
    seconds: float
    total_macs: int

    def __getitem__(self, path: str) -> LayerSensitivity:
        for row in self.layers:
            if row.path == path:
                return row
        raise UnknownLayerError(f"no weighted layer {path!r} in this sensitivity report")

    def ranking(self) -> list[str]:
        """Module paths, most sensitive first."""
        return [row.path for row in self.layers]

    def describe(self) -> str:
        """One line saying what was measured."""
        fm = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.fault_model.items())
        return (f"fault-free accuracy {100 * self.clean_accuracy:.2f}% on {self.samples} samples; each layer alone "
                f"on faulty chips ({fm}), p'={self.fault_rate:g}, {self.trials} chips from seed {self.seed}")

    def table(self, markdown: bool = False) -> str:
        """The layers as a table: rank, layer, kernel, device, MACs (and share), accuracy, spread, drop."""
        total = max(1, self.total_macs)
        rows = [(i, r.path, r.kernel, r.device, f"{r.macs:,}", f"{100 * r.macs / total:.1f}%",
                 f"{100 * r.accuracy:.2f}", f"{100 * r.result.std:.2f}", f"{100 * r.drop:+.2f}")
                for i, r in enumerate(self.layers, 1)]
        header = ("#", "layer", "kernel", "device", "MACs", "MAC share", "accuracy %", "± chips", "drop (pts)")
        lines = table_lines(header, rows, ">" + "<<<" + ">" * 5, markdown=markdown)
        return "\n".join([self.describe(), "", *lines] if not markdown else lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready), layers in report order."""
        return {"clean_accuracy": self.clean_accuracy, "fault_model": dict(self.fault_model),
                "fault_rate": self.fault_rate, "trials": self.trials, "seed": self.seed, "samples": self.samples,
                "seconds": self.seconds, "total_macs": self.total_macs,
                "layers": [row.to_dict() for row in self.layers]}


# ---- measuring -----------------------------------------------------------------------------------


def _progress(items: list[str], show: bool, desc: str) -> Iterable[str]:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="layer", leave=False, disable=None)


def _measure(work: fx.GraphModule, base: Policy, paths: list[str], batches: Iterable[Any],
             fault_model: BaseFaultModel, trials: int, seed: int, p_prime: float,
             progress: bool) -> dict[str, MonteCarloResult]:
    """Monte-Carlo result of each layer alone on RRAM (the same chips for every layer)."""
    results = {}
    for path in _progress(paths, progress, "layer sensitivity"):
        place_(work, base, {path})
        results[path] = monte_carlo(work, batches, fault_model, trials, seed, fault_rate=p_prime, progress=False)
    place_(work, base, frozenset())
    return results


def sensitivity(
    gm: fx.GraphModule,
    loader: Iterable[Any],
    fault_model: BaseFaultModel,
    trials: int = 100,
    seed: int = 0,
    layers: Iterable[str] | str | None = None,
    fault_rate: float | None = None,
    progress: bool = True,
) -> SensitivityReport:
    """Per-layer fault sensitivity of a prepared, trained model.

    For every weighted layer (or those ``layers`` names, paths or fnmatch globs) the model is
    evaluated on ``trials`` simulated chips of ``fault_model`` with only that layer on a faulty crossbar
    and every other layer fault-free, host layers included (they are measured as if moved to RRAM).
    The drop is measured against the fault-free accuracy; every layer sees the same chips (``seed``).
    ``fault_rate`` is the p' whose 1/(1-p') scale the faulty layer gets, by default the fault model's
    SA1 rate as in `rramfx.sweep`. The model is evaluated as given (its BatchNorm statistics are not
    recalibrated). ``gm`` is not changed: the work happens on a copy, on ``gm``'s device.
    """
    p_prime = check_search_args(gm, loader, fault_model, trials, seed, fault_rate, "sensitivity")
    current = placement(gm)
    paths = _select_layers(layers, list(current))
    start = time.perf_counter()
    work, base = working_copy(gm)
    batches = BatchCache(loader, module_device(work), CACHE_BYTES)
    clean = evaluate(work, batches)
    macs = layer_macs(work, first_inputs(batches))
    results = _measure(work, base, paths, batches, fault_model, trials, seed, p_prime, progress)
    order = {path: i for i, path in enumerate(current)}
    rows = sorted(
        (LayerSensitivity(path, kernel_label(work.get_submodule(path)), current[path], macs[path],
                          clean - results[path].mean, results[path]) for path in paths),
        key=lambda r: (-r.drop, order[r.path]),
    )
    samples = next(iter(results.values())).samples if results else 0
    return SensitivityReport(clean, tuple(rows), fault_model.to_dict(), p_prime, trials, seed, samples,
                             time.perf_counter() - start, sum(macs.values()))


__all__ = [
    "LayerSensitivity",
    "SensitivityError",
    "SensitivityReport",
    "check_search_args",
    "mac_share",
    "pinned_policy",
    "sensitivity",
]
