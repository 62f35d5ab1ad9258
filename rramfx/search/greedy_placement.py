"""`search_placement`: a greedy RRAM/host placement that puts as many MACs on RRAM as an accuracy budget
allows, for one trained model and one fault model.

The search starts from nothing on RRAM (the clean greedy: the result does not depend on how the model
was placed when it was trained) and ranks the layers by fault sensitivity per MAC (`rramfx.sensitivity`:
each layer's accuracy drop alone on faulty chips, divided by its MACs; negative drops count as 0, ties
go to the layer with more MACs, then module order). It then adds the layers one by one in that order,
evaluating the whole candidate placement on the same Monte-Carlo chips at every step, keeps a layer
when the loss against the fault-free accuracy stays within the budget, and skips it otherwise
(without an evaluation when the layer alone already breaks the budget). Layers that no forward pass
reaches (0 MACs) stay on the host.

The model is evaluated as given: a layer moved to RRAM by the search was not trained with DropConnect
and its BatchNorm statistics are not recalibrated, so the accuracy found is what the trained model
keeps without retraining; fine-tuning with the found policy can only be expected to help.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import fx

from rramfx.crossbar.faults import BaseFaultModel
from rramfx.errors import ArgumentTypeError, SensitivityError
from rramfx.evaluation.chips import BatchCache, MonteCarloResult, monte_carlo
from rramfx.graph.modules import module_device
from rramfx.graph.placement_report import placement
from rramfx.passes.devices import rule_device
from rramfx.policy import Policy
from rramfx.search.layer_sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    check_search_args,
    sensitivity,
)
from rramfx.search.working_copy import CACHE_BYTES, mac_share, pinned_policy, place_, working_copy
from rramfx.tables import table_lines


@dataclass(frozen=True)
class SearchStep:
    """One layer considered by the greedy search. ``drop`` is its own sensitivity; ``accuracy`` and
    ``loss`` (fault-free accuracy minus Monte-Carlo mean) are the candidate placement's, None when the
    candidate was not evaluated. ``reason`` says why the layer was kept or skipped."""

    path: str
    macs: int
    drop: float
    accepted: bool
    accuracy: float | None
    loss: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class PlacementSearch:
    """The result of `search_placement`.

    ``placement``: module path → "rram"/"cpu" found; ``policy``: the model's policy with one override
    per weighted layer pinning it there (``rramfx.prepare(model, policy)`` reproduces ``placement``);
    ``accuracy``: the Monte-Carlo result at that placement. MAC shares are the fraction of all MACs
    per sample on RRAM: of the result, of the paper's kernel-size rule (``rule_placement``: k×k
    convolutions on RRAM, 1x1 and linear on the host) and of the model's placement as given
    (``initial_placement``).
    """

    budget: float
    clean_accuracy: float
    placement: dict[str, str]
    policy: Policy
    accuracy: MonteCarloResult
    macs: dict[str, int]
    rram_mac_share: float
    rule_placement: dict[str, str]
    rule_mac_share: float
    initial_placement: dict[str, str]
    initial_mac_share: float
    steps: tuple[SearchStep, ...]
    sensitivity: SensitivityReport
    seconds: float

    @property
    def loss(self) -> float:
        """Fault-free accuracy minus the Monte-Carlo mean at the found placement."""
        return self.clean_accuracy - self.accuracy.mean

    def rram_layers(self) -> list[str]:
        """Module paths the found placement puts on RRAM, in module order."""
        return [path for path, device in self.placement.items() if device == "rram"]

    def table(self, markdown: bool = False) -> str:
        """The greedy steps in order, then a summary line."""
        rows = [(i, s.path, f"{s.macs:,}", f"{100 * s.drop:+.2f}",
                 "-" if s.accuracy is None else f"{100 * s.accuracy:.2f}",
                 "-" if s.loss is None else f"{100 * s.loss:+.2f}", "rram" if s.accepted else "cpu", s.reason)
                for i, s in enumerate(self.steps, 1)]
        header = ("#", "layer", "MACs", "own drop (pts)", "accuracy %", "loss (pts)", "device", "why")
        lines = table_lines(header, rows, "><>>>><<", markdown=markdown)
        summary = (f"budget {100 * self.budget:g} pts: {100 * self.rram_mac_share:.1f}% of MACs on RRAM "
                   f"(kernel-size rule {100 * self.rule_mac_share:.1f}%), accuracy {100 * self.accuracy.mean:.2f}% "
                   f"vs {100 * self.clean_accuracy:.2f}% fault-free (loss {100 * self.loss:.2f} pts, "
                   f"{self.accuracy.trials} chips)")
        return "\n".join([*lines, "", summary])

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON ready)."""
        return {
            "budget": self.budget, "clean_accuracy": self.clean_accuracy, "placement": dict(self.placement),
            "policy": self.policy.to_dict(), "accuracy": self.accuracy.to_dict(), "loss": self.loss,
            "macs": dict(self.macs), "rram_mac_share": self.rram_mac_share,
            "rule_placement": dict(self.rule_placement), "rule_mac_share": self.rule_mac_share,
            "initial_placement": dict(self.initial_placement), "initial_mac_share": self.initial_mac_share,
            "steps": [s.to_dict() for s in self.steps], "sensitivity": self.sensitivity.to_dict(),
            "seconds": self.seconds,
        }


def _check_budget(budget: Any) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or math.isnan(budget):
        raise SensitivityError(
            f"budget must be a fraction in (0, 1), the accuracy loss allowed (0.01 = one point), got {budget!r}")
    if not 0.0 < budget < 1.0:
        raise SensitivityError(
            f"budget must be in (0, 1), the accuracy loss allowed as a fraction (0.01 = one point), got {budget}")
    return float(budget)


def _check_report(report: Any, fault_model: BaseFaultModel, trials: int, seed: int, p_prime: float,
                  paths: list[str]) -> SensitivityReport:
    """A sensitivity report given to the search must have measured the same chips on every layer."""
    if not isinstance(report, SensitivityReport):
        raise ArgumentTypeError(f"report must be an rramfx.SensitivityReport, got {type(report).__name__}")
    differs = [f"{name} {mine!r} there, {theirs!r} here" for name, mine, theirs in (
        ("fault_model", report.fault_model, fault_model.to_dict()), ("trials", report.trials, trials),
        ("seed", report.seed, seed), ("fault_rate", report.fault_rate, p_prime)) if mine != theirs]
    missing = sorted(set(paths) - {row.path for row in report.layers})
    if missing:
        differs.append(f"layers {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''} not measured")
    if differs:
        raise SensitivityError(f"report was measured differently from this search: {'; '.join(differs)}")
    return report


def greedy_order(report: SensitivityReport, paths: list[str]) -> list[LayerSensitivity]:
    """The order the search tries the layers ``paths`` (in module order) in: sensitivity per MAC
    (negative drops as 0) ascending, more MACs first on ties, then module order; no-MAC layers last."""
    position = {path: i for i, path in enumerate(paths)}

    def key(row: LayerSensitivity) -> tuple[float, int, int]:
        per_mac = max(row.drop, 0.0) / row.macs if row.macs else math.inf
        return per_mac, -row.macs, position[row.path]

    return sorted((report[path] for path in paths), key=key)


def _greedy(work: fx.GraphModule, base: Policy, order: list[LayerSensitivity], budget: float, clean: float,
            run: Any) -> tuple[list[str], list[SearchStep], MonteCarloResult | None]:
    """Add layers in ``order`` while the loss stays within ``budget``; ``run()`` evaluates ``work``."""
    chosen: list[str] = []
    steps: list[SearchStep] = []
    final = None
    for row in order:
        if row.macs == 0:
            steps.append(SearchStep(row.path, 0, row.drop, False, None, None, "no MACs (never called)"))
            continue
        if row.drop > budget:
            steps.append(SearchStep(row.path, row.macs, row.drop, False, None, None, "alone over budget"))
            continue
        if chosen:
            place_(work, base, {*chosen, row.path})
            result = run()
        else:
            result = row.result  # the very same chips: this layer alone is what sensitivity measured
        loss = clean - result.mean
        accepted = loss <= budget + 1e-12
        steps.append(SearchStep(row.path, row.macs, row.drop, accepted, result.mean, loss,
                                "within budget" if accepted else "over budget"))
        if accepted:
            chosen.append(row.path)
            final = result
    return chosen, steps, final


def search_placement(
    gm: fx.GraphModule,
    loader: Iterable[Any],
    budget: float,
    fault_model: BaseFaultModel,
    trials: int = 100,
    seed: int = 0,
    *,
    fault_rate: float | None = None,
    report: SensitivityReport | None = None,
    progress: bool = True,
) -> PlacementSearch:
    """Greedy placement with the most MACs on RRAM whose Monte-Carlo accuracy loss (fault-free accuracy
    minus the mean over ``trials`` chips of ``fault_model``) is at most ``budget`` (a fraction in (0, 1):
    0.01 is one point). See the module docstring for the order and the rules.

    ``fault_rate`` is p' (default: the SA1 rate, as `rramfx.sensitivity`). ``report``: a sensitivity
    report of this model and loader with the same fault model, trials, seed and p', to reuse instead of
    measuring again. ``gm`` is not changed; the result's ``policy`` prepares the found placement.
    """
    p_prime = check_search_args(gm, loader, fault_model, trials, seed, fault_rate, "search_placement")
    budget = _check_budget(budget)
    initial = placement(gm)
    if report is None:
        report = sensitivity(gm, loader, fault_model, trials, seed, fault_rate=p_prime, progress=progress)
    report = _check_report(report, fault_model, trials, seed, p_prime, list(initial))
    start = time.perf_counter()
    work, base = working_copy(gm)
    batches = BatchCache(loader, module_device(work), CACHE_BYTES)

    def run() -> MonteCarloResult:
        return monte_carlo(work, batches, fault_model, trials, seed, fault_rate=p_prime, progress=progress)

    clean = report.clean_accuracy
    chosen, steps, final = _greedy(work, base, greedy_order(report, list(initial)), budget, clean, run)
    if final is None:  # nothing on RRAM: every chip is the fault-free model
        place_(work, base, frozenset())
        final = run()
    found = {path: ("rram" if path in chosen else "cpu") for path in initial}
    macs = {path: report[path].macs for path in initial}
    rule = {path: rule_device(work.get_submodule(path), Policy()) for path in initial}
    return PlacementSearch(
        budget, clean, found, pinned_policy(base, found), final, macs, mac_share(macs, found), rule,
        mac_share(macs, rule), initial, mac_share(macs, initial), tuple(steps), report,
        report.seconds + time.perf_counter() - start)


__all__ = ["PlacementSearch", "SearchStep", "greedy_order", "search_placement"]
