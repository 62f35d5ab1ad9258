"""Monte-Carlo fault simulation in onnxruntime: one ``faults="inputs"`` export, many chips.

Chip ``i`` of a run started from ``seed`` is drawn exactly as the PyTorch side draws it
(``rramfx.inject_faults(gm, fault_model, seed=chip_seed(seed, i))``: the same per-layer random streams
over the same module paths and weight shapes), so `ort_monte_carlo` and `rramfx.monte_carlo` evaluate
the same chips and agree trial by trial, up to float ties in the arg-max.

Three ways to run a chip (``method=``). ``"read_weights"`` (the default) computes the chip's read weights
once, with the fault model's ``read_weight`` as PyTorch does, turns them into the weights of the graph
onnxruntime optimised (fused, re-laid out: `rramfx.onnx.packed_weights`) and feeds them to one session
that runs every chip; a graph that does not pack gets a session per chip. ``"chip_sessions"`` opens a
session per chip with the read weights as constant initializers (`rramfx.onnx.chip_sessions`), which
onnxruntime optimises anew for each chip. ``"graph"`` runs the export's own fault nodes once per chip and
feeds their output to the rest of the graph as inputs (the deployed graph's arithmetic, but weights
onnxruntime cannot fuse or re-lay out).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rramfx.checks import string_list, trials_and_seed
from rramfx.crossbar.faults import BaseFaultModel, FaultSet, chip_seed, draw_fault_set
from rramfx.data.batches import split_batch
from rramfx.errors import ArgumentError, ArgumentTypeError, OnnxError
from rramfx.onnx import meta as M
from rramfx.onnx.chip_sessions import ReadWeightGraph, read_weight_graph
from rramfx.onnx.feed import onnx_fault_inputs, session_options
from rramfx.onnx.packed_weights import pack_chips
from rramfx.onnx.plan import used_names
from rramfx.statistics import ChipStatistics, chip_statistics
from rramfx.tensor_checks import check_array, check_labels

__all__ = ["METHODS", "OrtMonteCarloResult", "ort_monte_carlo"]

#: The ways `ort_monte_carlo` runs a chip (see the module docstring).
METHODS = ("read_weights", "chip_sessions", "graph")

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class OrtMonteCarloResult:
    """Per-chip results of `ort_monte_carlo`: ``predictions[i]`` are chip ``i``'s arg-max classes for
    every sample, ``accuracies[i]`` its top-1 accuracy (None without labels)."""

    predictions: np.ndarray
    accuracies: tuple[float, ...] | None
    seeds: tuple[int, ...]
    seed: int
    fault_model: dict[str, Any]
    fault_rate: float
    samples: int
    seconds: float

    @property
    def trials(self) -> int:
        return len(self.seeds)

    @property
    def statistics(self) -> ChipStatistics | None:
        """Mean, spread, 95% CI of the mean and middle-95% range of the chip accuracies, computed as for
        `rramfx.MonteCarloResult` (`rramfx.statistics.chip_statistics`); None without labels."""
        return chip_statistics(self.accuracies) if self.accuracies else None

    @property
    def mean(self) -> float:
        """Mean accuracy over chips (NaN without labels)."""
        stats = self.statistics
        return stats.mean if stats else math.nan

    @property
    def std(self) -> float:
        """Chip-to-chip standard deviation of the accuracy (n-1; 0 for one chip, NaN without labels)."""
        stats = self.statistics
        return stats.std if stats else math.nan

    def __str__(self) -> str:
        if self.accuracies is None:
            return f"predictions of {self.samples} samples on {self.trials} chips (no labels)"
        return f"{100 * self.mean:.2f}% ± {100 * self.std:.2f} over {self.trials} chips (onnxruntime)"


def _batches(data: Any, batch_size: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``data`` as a list of (inputs, labels or None) NumPy batches: an array or tensor of inputs, an
    (inputs, labels) pair of arrays, or an iterable of (x, y) batches such as a DataLoader."""

    def arr(v: Any) -> np.ndarray:
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    if isinstance(data, (np.ndarray, torch.Tensor)):
        x = arr(data)
        out = [(x[i:i + batch_size], None) for i in range(0, len(x), batch_size)]
    elif isinstance(data, tuple) and len(data) == 2 and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in data):
        x, y = arr(data[0]), arr(data[1])
        if len(x) != len(y):
            raise ArgumentError(f"data: inputs and labels differ in length: {len(x)} and {len(y)}")
        out = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    else:
        out = [(arr(b), None) if isinstance(b, (np.ndarray, torch.Tensor)) else tuple(map(arr, split_batch(b)))
               for b in data]
    if not sum(len(x) for x, _ in out):
        raise ArgumentError("data holds no samples: pass inputs, an (inputs, labels) pair or (x, y) batches")
    return out


def _classes(model: onnx.ModelProto) -> int | None:
    """The class count of a single-output classifier graph (its output's last dim), None when symbolic."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None


def _check_batches(batches: list[tuple[np.ndarray, np.ndarray | None]], data_name: str,
                   shapes: dict[str, list[Any]], classes: int | None) -> None:
    """Every batch's inputs float32 of the graph's per-sample shape, every label batch integer class
    indices (`check_labels`), before any chip is drawn; onnxruntime's own message names neither."""
    sample = (None, *shapes[data_name][1:])
    for x, y in batches:
        check_array(data_name, x, "float32", sample, ArgumentError)
        if y is not None:
            check_labels("data's labels", torch.as_tensor(y), classes or int(y.max(initial=0)) + 1, len(x))


def _split_by_chip(model: onnx.ModelProto, data_names: list[str]) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Cut a ``faults="inputs"`` graph into the part that reads no data (fault codes and weights in,
    this chip's faulty weights out: run once per chip) and the rest (run once per batch)."""
    from onnx.utils import Extractor

    nodes = list(model.graph.node)
    reached = set(data_names)
    chip_nodes = []
    for node in nodes:  # topological order
        if any(x in reached for x in used_names(node)):
            reached.update(node.output)
        else:
            chip_nodes.append(node)
    built = {o for n in chip_nodes for o in n.output}
    cut = sorted({x for n in nodes if n not in chip_nodes for x in used_names(n) if x in built}
                 | {o.name for o in model.graph.output if o.name in built})
    codes = [i.name for i in model.graph.input if i.name not in data_names]
    extractor = Extractor(model)
    return (extractor.extract_model(codes, cut),
            extractor.extract_model(list(data_names) + cut, [o.name for o in model.graph.output]))


def ort_monte_carlo(
    onnx_path: str | Path,
    data: Any,
    fault_model: BaseFaultModel,
    trials: int = 100,
    seed: int = 0,
    *,
    batch_size: int = 256,
    providers: Sequence[str] | None = None,
    progress: bool = True,
    method: str = "read_weights",
    threads: int | None = None,
) -> OrtMonteCarloResult:
    """Evaluate a ``faults="inputs"`` export on ``trials`` chips drawn from ``fault_model`` and ``seed``,
    in onnxruntime. ``data``: inputs (array/tensor), an (inputs, labels) pair, or an iterable of (x, y)
    batches. A graph exported with a static batch gets its last batch padded.

    ``method="read_weights"`` (default): each chip's read weights are computed once (the fault model's
    ``read_weight``, as `rramfx.monte_carlo` computes them), gathered into the layout of the graph
    onnxruntime optimised once, and fed to one session; a chip costs one draw, the read weights and
    plain inference. ``method="chip_sessions"``: a session per chip with the read weights as
    initializers, which onnxruntime optimises for each chip (also what ``read_weights`` does for a graph
    that does not pack, see `rramfx.onnx.packed_weights`). ``method="graph"``: the graph is cut in two
    sessions, the nodes that read no data (fault codes → this chip's faulty, scaled weights) run once per
    chip, the rest once per batch with those weights as inputs. All give the whole graph's numbers.
    ``threads``: onnxruntime intra-op threads (None: its default)."""
    if not isinstance(fault_model, BaseFaultModel):
        raise ArgumentTypeError(f"fault_model must be an rramfx.FaultModel, got {type(fault_model).__name__}")
    trials_and_seed(trials, seed)
    if providers is not None:
        providers = string_list("providers", providers)
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ArgumentError(f"threads must be None or an int >= 1, got {threads!r}")
    model, fault_rate, code_names = _inputs_export(onnx_path, fault_model)
    runner = (_open_sessions(model, code_names, providers, onnx_path, threads) if method == "graph"
              else _ChipSessions(model, code_names, onnx_path, providers, threads, pack=method == "read_weights"))
    batches = _batches(data, runner.fixed or batch_size)
    _check_batches(batches, *_single_input(model, code_names, onnx_path)[::2], _classes(model))
    labelled = all(y is not None for _, y in batches)
    start = time.perf_counter()
    seeds = tuple(chip_seed(seed, i) for i in range(trials))
    predictions = _predict_chips(runner, batches, fault_model, seeds, progress)
    accuracies = None
    if labelled:
        labels = np.concatenate([y for _, y in batches])
        accuracies = tuple(float((chip == labels).mean()) for chip in predictions)
    return OrtMonteCarloResult(predictions, accuracies, seeds, seed, json.loads(json.dumps(fault_model.to_dict())),
                               fault_rate, predictions.shape[1], time.perf_counter() - start)


def _single_input(model: onnx.ModelProto, code_names: dict[str, str], onnx_path: str | Path
                  ) -> tuple[str, int | None, dict[str, list[Any]]]:
    """The data input of a ``faults="inputs"`` graph, its static batch (None when dynamic) and the
    shape of every graph input; a graph with more than one data input raises `OnnxError`."""
    shapes = {i.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input}
    data_names = [n for n in shapes if n not in set(code_names.values())]
    if len(data_names) != 1:
        raise OnnxError(f"ort_monte_carlo runs single-input models; '{onnx_path}' takes {data_names}")
    batch_dim = shapes[data_names[0]][0]
    return data_names[0], batch_dim if isinstance(batch_dim, int) else None, shapes


class _ChipSessions:
    """``method="read_weights"``: the `ReadWeightGraph` of the export, run as `PackedChips` (one session,
    each chip's weights fed as inputs) where the graph packs, else (and for ``method="chip_sessions"``)
    with a session per chip."""

    def __init__(self, model: onnx.ModelProto, code_names: dict[str, str], onnx_path: str | Path,
                 providers: Sequence[str] | None, threads: int | None, pack: bool):
        self.data_name, self.fixed, _ = _single_input(model, code_names, onnx_path)
        self.graph: ReadWeightGraph = read_weight_graph(model)
        self.layers = {p: SimpleNamespace(weight=torch.empty(w.shape, device="meta"))
                       for p, w in self.graph.trained.items()}
        self.providers, self.threads = providers, threads
        self.packed = pack_chips(self.graph, providers=providers) if pack else None
        self.session = self.packed.session(threads=threads, providers=providers) if self.packed else None

    def chip(self, faults: FaultSet) -> tuple[Any, dict[str, Any]]:
        """The session and feed (without data) of one chip."""
        weights = self.graph.read_weights(faults)
        if self.packed is not None:
            return self.session, self.packed.feed(weights)
        return self.graph.session(weights, threads=self.threads, providers=self.providers), {}


@dataclass(frozen=True)
class _Sessions:
    """``method="graph"``: the two onnxruntime sessions of a cut ``faults="inputs"`` graph (see
    `_split_by_chip`): ``chip_session`` turns fault codes into the names ``built`` (a chip's weights),
    ``data`` runs a batch of the input ``data_name`` (``fixed``: the graph's static batch, None when
    dynamic). ``layers``: module path -> a stand-in with the weight's shape, all that `draw_fault_set`
    reads of a layer."""

    chip_session: Any
    data: Any
    built: list[str]
    data_name: str
    fixed: int | None
    layers: dict[str, SimpleNamespace]

    def chip(self, faults: FaultSet) -> tuple[Any, dict[str, Any]]:
        """The data session and the feed of this chip's weights."""
        codes = onnx_fault_inputs(faults)
        return self.data, dict(zip(self.built, self.chip_session.run(self.built, codes), strict=True))


def _open_sessions(model: onnx.ModelProto, code_names: dict[str, str], providers: Sequence[str] | None,
                   onnx_path: str | Path, threads: int | None) -> _Sessions:
    """Cut ``model`` in its per-chip and per-batch parts and open a session on each."""
    import onnxruntime as ort

    opts = session_options(threads)
    providers = list(providers or ["CPUExecutionProvider"])
    data_name, fixed, shapes = _single_input(model, code_names, onnx_path)
    chip_model, data_model = _split_by_chip(model, [data_name])
    chip = ort.InferenceSession(chip_model.SerializeToString(), opts, providers=providers)
    data = ort.InferenceSession(data_model.SerializeToString(), opts, providers=providers)
    layers = {p: SimpleNamespace(weight=torch.empty(shapes[name], device="meta")) for p, name in code_names.items()}
    return _Sessions(chip, data, [o.name for o in chip.get_outputs()], data_name, fixed, layers)


def _predict_chips(runner: Any, batches: list[tuple[np.ndarray, np.ndarray | None]],
                   fault_model: BaseFaultModel, seeds: tuple[int, ...], progress: bool) -> np.ndarray:
    """Class predictions ``[chip, sample]``: chip ``i`` is ``draw_fault_set(..., seeds[i])``, turned once
    into a session and feed by ``runner.chip``, then every batch is run through that session."""
    samples = sum(len(x) for x, _ in batches)
    predictions = np.empty((len(seeds), samples), dtype=np.int64)
    chips: Iterable[int] = range(len(seeds))
    if progress:
        from tqdm.auto import tqdm

        chips = tqdm(chips, desc="chips (onnxruntime)", unit="chip", leave=False, disable=None)
    for i in chips:
        session, feed = runner.chip(draw_fault_set(runner.layers, fault_model, seeds[i]))
        _predict(session, feed, runner.data_name, batches, runner.fixed, predictions[i])
    return predictions


def _inputs_export(onnx_path: str | Path, fault_model: BaseFaultModel) -> tuple[Any, float, dict[str, str]]:
    """The annotated model of a ``faults="inputs"`` export that applies ``fault_model``'s kind of faults,
    the p' its RRAM weights are scaled by, and its fault-code inputs (module path -> input name)."""
    model = M.load_annotated(onnx_path)
    meta = M.model_meta(model, onnx_path)
    if meta["fault_mode"] != "inputs":
        raise OnnxError(f"'{onnx_path}' has fault mode {meta['fault_mode']!r}; ort_monte_carlo needs an export "
                        "with faults='inputs' (`rramfx export --faults inputs`)")
    kind = meta["faults"]["fault_model"].get("kind")
    if kind != fault_model.kind:
        raise OnnxError(f"'{onnx_path}' applies {kind!r} faults; fault_model is {fault_model.kind!r}: "
                        "export again with that fault model")
    rates = {float(M.node_meta(n)["fault_rate"]) for n in model.graph.node if "fault_rate" in M.node_meta(n)}
    # the p' the graph scales RRAM weights by (set_fault_rate may differ from the policy's)
    return model, max(rates, default=0.0), meta["faults"]["inputs"]


def _predict(session: Any, feed: dict[str, Any], data_name: str, batches: list[tuple[Any, Any]], fixed: int | None,
             out: np.ndarray) -> None:
    """Class predictions of one chip (its weights in ``feed``) for every batch, written into ``out``."""
    at = 0
    for x, _ in batches:
        n = len(x)
        if fixed and n < fixed:  # pad a short last batch for a fixed-batch graph
            x = np.concatenate([x, np.repeat(x[-1:], fixed - n, axis=0)])
        feed[data_name] = np.ascontiguousarray(x, dtype=np.float32)
        out[at:at + n] = session.run(None, feed)[0][:n].argmax(1)
        at += n
