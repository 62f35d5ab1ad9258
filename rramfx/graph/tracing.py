"""Turn any ``nn.Module`` into a torch.fx GraphModule on which every weighted layer is its own node.

Plain ``torch.fx.symbolic_trace`` is not enough for the models people bring: it traces *into* timm's
``Conv2dSame`` or ``StdConv2d`` (so the convolution disappears into functional calls), and it gives up
on the first module with data-dependent control flow. ``trace`` keeps every convolution and linear
subclass as a leaf, honours timm's own no-trace registry, and when a module's forward cannot be traced
it makes that innermost module a leaf and tries again, recording what it did.
"""

from __future__ import annotations

import copy
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves

from rramfx.checks import class_list
from rramfx.errors import ArgumentError, ArgumentTypeError, TraceError
from rramfx.graph.modules import eval_mode, is_weighted, weighted_layers
from rramfx.graph.record import rramfx_meta
from rramfx.graph.shapes import as_args
from rramfx.tensor_checks import check_model_inputs, run_example

__all__ = ["check_traced_equal", "trace"]

_MAX_RETRIES = 64
_TORCH_DIR = os.path.dirname(torch.__file__)


@dataclass
class _Failure:
    path: str
    module: nn.Module
    error: BaseException


def _timm_notrace() -> tuple[set[type], list[Callable]]:
    """timm's registered leaf modules and wrapped functions, if timm has been imported by the user."""
    if "timm" not in sys.modules:
        return set(), []
    try:
        from timm.layers import _fx as timm_fx
    except ImportError:  # an old timm without the registry
        return set(), []
    return set(timm_fx.get_notrace_modules()), list(timm_fx.get_notrace_functions())


class _RramfxTracer(fx.Tracer):
    """A tracer that keeps weighted layers, timm's no-trace modules and chosen classes as leaves, and
    remembers the innermost module whose forward raised."""

    def __init__(
        self, leaf_types: Iterable[type] = (), timm_leaves: Iterable[type] = (), autowrap: Iterable[Callable] = ()
    ):
        # Defaults let torch.fx rebuild the tracer with no arguments when a GraphModule is unpickled.
        super().__init__(autowrap_functions=tuple(autowrap))
        self.leaf_types = set(leaf_types)
        self.timm_leaves = set(timm_leaves)
        self.failure: _Failure | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_weighted(m) or type(m) in self.leaf_types:
            return True
        if type(m) in self.timm_leaves:
            # timm's registry is made for feature extraction, where a leaf costs nothing. Here a leaf
            # that holds convolutions hides them, so those are traced into and become leaves only if
            # their forward really cannot be traced.
            return not any(is_weighted(c) for c in m.modules() if c is not m)
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:
            if self.failure is None:  # the innermost module sees the exception first
                self.failure = _Failure(self.path_of_module(m), m, e)
            raise


def _source_line(error: BaseException) -> str:
    """The last frame of the error's traceback that is user or library code, not torch itself."""
    frames = traceback.extract_tb(error.__traceback__)
    outside = [f for f in frames if not f.filename.startswith(_TORCH_DIR)] or frames
    if not outside:
        return "<unknown>"
    f = outside[-1]
    return f"{f.filename}:{f.lineno}: {(f.line or '').strip()}"


def _hidden_weighted_layers(root: nn.Module, graph: fx.Graph) -> dict[str, list[str]]:
    """Leaf modules in the graph that are not weighted themselves but contain weighted layers."""
    hidden: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target in hidden:
            continue
        leaf = root.get_submodule(node.target)
        if is_weighted(leaf):
            continue
        inner = [f"{node.target}.{n}" for n in weighted_layers(leaf)]  # host-only layers hide none
        if inner:
            hidden[node.target] = inner
    return hidden


def trace(
    model: nn.Module,
    leaf_modules: Iterable[type[nn.Module]] = (),
    example_inputs: tuple | torch.Tensor | None = None,
) -> fx.GraphModule:
    """Trace ``model`` (a copy of it) into a GraphModule whose weighted layers are all call_module nodes.

    ``leaf_modules`` adds classes that must not be traced into. With ``example_inputs`` the traced
    graph is run beside the eager model (both in eval mode) and must give the same output.
    The graph is traced in eval mode: Python branches on ``self.training`` inside traced modules
    are fixed to their eval branch (leaf modules such as BatchNorm and Dropout still follow
    ``.train()``/``.eval()``). What became a leaf and why is kept in ``gm.meta["rramfx"]``.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"rramfx.trace: model must be an nn.Module, got {type(model).__name__}")
    leaf_types = set(class_list("leaf_modules", leaf_modules, nn.Module))
    if example_inputs is not None and not isinstance(example_inputs, (dict, list)):
        check_model_inputs("example_inputs", model, example_inputs)
    root = copy.deepcopy(model)
    root.eval()
    graph, auto_leaf_types = _trace_with_auto_leaves(root, leaf_types)
    gm = fx.GraphModule(root, graph, class_name=type(model).__name__)
    gm.train(model.training)
    _record_leaves(gm, root, auto_leaf_types)
    if example_inputs is not None:
        check_traced_equal(model, gm, example_inputs)
    return gm


def _trace_with_auto_leaves(root: nn.Module, leaf_types: set[type]) -> tuple[fx.Graph, dict[type, tuple[str, str]]]:
    """Trace ``root``; each time a module's forward cannot be traced, make its class a leaf and retry.
    Returns the graph and, per auto-leaf class, the first path it failed at and its source line."""
    timm_leaves, autowrap = _timm_notrace()
    auto_leaf_types: dict[type, tuple[str, str]] = {}
    for _ in range(_MAX_RETRIES):
        tracer = _RramfxTracer(leaf_types | set(auto_leaf_types), timm_leaves, autowrap)
        try:
            return tracer.trace(root), auto_leaf_types
        except Exception as e:
            failure = tracer.failure
            if failure is None or type(failure.module) in auto_leaf_types:
                path = failure.path if failure else ""
                cls = type(failure.module if failure else root)
                raise TraceError(_explain(path, cls, failure.error if failure else e)) from e
            auto_leaf_types[type(failure.module)] = (failure.path, _source_line(failure.error))
    raise TraceError(f"gave up after making {_MAX_RETRIES} module classes leaves")  # pragma: no cover


def _record_leaves(gm: fx.GraphModule, root: nn.Module, auto_leaf_types: dict[type, tuple[str, str]]) -> None:
    """Keep what became a leaf and why in the record, and warn about leaves that hide weighted layers."""
    graph = gm.graph
    leaves = sorted(
        {n.target for n in graph.nodes if n.op == "call_module"
         and type(root.get_submodule(n.target)) in auto_leaf_types}
    )
    hidden = _hidden_weighted_layers(root, graph)
    meta = rramfx_meta(gm)
    meta["auto_leaves"] = leaves
    meta["auto_leaf_reasons"] = {
        f"{c.__module__}.{c.__qualname__}": {"first_path": p, "source": s}
        for c, (p, s) in auto_leaf_types.items()
    }
    meta["hidden_weighted"] = hidden
    if hidden:
        listing = "; ".join(f"{leaf} hides {', '.join(inner)}" for leaf, inner in sorted(hidden.items()))
        warnings.warn(
            f"rramfx.trace: {len(hidden)} leaf module(s) contain weighted layers that are not graph "
            f"nodes of their own ({listing}). They are placed and converted like the others, and "
            "DropConnect and faults reach them only where the leaf calls them as modules, not where "
            "it reads their .weight directly. Make the leaf's forward traceable to see them in the graph.",
            stacklevel=3,
        )


def _explain(path: str, cls: type, error: BaseException) -> str:
    where = f"module '{path}'" if path else "the model's own forward"
    return (
        f"cannot trace {where} ({cls.__module__}.{cls.__qualname__}) at {_source_line(error)}: "
        f"{type(error).__name__}: {error}. Its forward depends on tensor values or on Python features "
        "torch.fx cannot record. Make it traceable (e.g. move the data-dependent branch into a "
        "small helper wrapped with torch.fx.wrap), or pass its class in leaf_modules=[...] "
        "(rramfx.trace / rramfx.prepare) if it holds no layer that should go to RRAM."
    )


def check_traced_equal(model: nn.Module, gm: fx.GraphModule, example_inputs: Any) -> None:
    """Raise TraceError if the traced graph's eval output differs from the eager model's."""
    args = as_args(example_inputs)
    eager = copy.deepcopy(model).eval()
    want = run_example("example_inputs", eager, args, ArgumentError)
    with eval_mode(gm), torch.no_grad():
        got = gm(*args)
    want_flat, got_flat = _flatten(want), _flatten(got)
    if len(want_flat) != len(got_flat):
        raise TraceError(f"traced model returns {len(got_flat)} tensors, the eager model {len(want_flat)}")
    for i, (w, g) in enumerate(zip(want_flat, got_flat, strict=True)):
        if w.shape != g.shape or not torch.allclose(w, g, rtol=1e-5, atol=1e-6):
            diff = (w - g).abs().max().item() if w.shape == g.shape else "shape"
            raise TraceError(
                f"traced output {i} differs from the eager model's (max abs diff {diff}); a Python "
                "branch inside a traced module probably depends on the input. Pass that module's "
                "class in leaf_modules=[...]."
            )


def _flatten(out: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_leaves(out) if isinstance(leaf, torch.Tensor)]
