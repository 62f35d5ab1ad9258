"""The analysis driver: shape propagation, shared helpers and per-node dispatch."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from rramfx.channels.functional import _FunctionalRules
from rramfx.channels.indexing import _IndexRules
from rramfx.channels.layers import _LayerRules
from rramfx.channels.optables import (
    _BINARY_FUNCTIONS,
    _BINARY_METHODS,
    _ELEMENTWISE_FUNCTIONS,
    _ELEMENTWISE_METHODS,
    _REDUCTION_FUNCTIONS,
    _REDUCTIONS,
    _SPATIAL_FUNCTIONS,
    _VIEW_METHODS,
    _describe,
    _is_known_leaf,
)
from rramfx.channels.reshape import _ReshapeRules
from rramfx.channels.spaces import (
    PIN_BROADCAST,
    PIN_INPUT,
    PIN_OUTPUT,
    PIN_SHAPE,
    PIN_UNSUPPORTED,
    Layout,
    Spaces,
    _Mismatch,
)
from rramfx.channels.values import TV, Barrier, Hazard, ModuleUse
from rramfx.errors import PassError
from rramfx.graph.shapes import as_args, shape_prop, tensor_meta

__all__ = ["ChannelAnalysis", "channel_analysis"]


class ChannelAnalysis(_LayerRules, _IndexRules, _ReshapeRules, _FunctionalRules):
    """Run the coupling analysis on ``gm`` (its nodes get ShapeProp metadata from ``example_inputs``).

    Results: ``S`` (the `Spaces`), ``values`` (node → TV or tuple of TV), ``modules`` (layer path →
    ModuleUse), ``params`` (parameter/buffer name → {dim: layout} for tensors read with get_attr),
    ``rewrites`` (nodes whose constant size arguments depend on channel counts), ``hazards``,
    ``barriers``, ``producer_layouts`` (every layer's output layout, for rounding) and ``reference``
    (the model's output on the example inputs).
    """

    def __init__(self, gm: fx.GraphModule, example_inputs: Any) -> None:
        self.gm = gm
        self.S = Spaces()
        self.values: dict[fx.Node, Any] = {}
        self.modules: dict[str, ModuleUse] = {}
        self.params: dict[str, dict[int, Layout]] = {}
        self.rewrites: list[tuple[fx.Node, str, Any]] = []
        self.hazards: list[Hazard] = []
        self.barriers: list[Barrier] = []
        self.producer_layouts: list[Layout] = []
        self.leaf_calls: dict[str, list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]] = {}
        self._run_shapes(example_inputs)
        for node in gm.graph.nodes:
            try:
                self.values[node] = self._visit(node)
            except _Mismatch as e:
                raise PassError(
                    f"channel coupling at node '{node.name}' ({_describe(node)}) is inconsistent: {e}. "
                    "The analysis cannot match the channel layouts of its inputs and outputs; "
                    "widen this model by hand or report the pattern."
                ) from e

    # ---- shapes and leaf calls --------------------------------------------------------------------
    def _run_shapes(self, example_inputs: Any) -> None:
        hooks = []
        for node in self.gm.graph.nodes:
            if node.op != "call_module":
                continue
            leaf = self.gm.get_submodule(node.target)
            if _is_known_leaf(leaf) or not any(True for _ in leaf.parameters()):
                continue
            calls = self.leaf_calls.setdefault(node.target, [])
            for name, sub in leaf.named_modules():
                if sub is not leaf and _is_known_leaf(sub):
                    hooks.append(sub.register_forward_hook(
                        lambda m, i, o, name=name, calls=calls: calls.append((name, m, i[0], o))))
        try:
            self.reference = shape_prop(self.gm, example_inputs, "widen_channels")
        finally:
            for h in hooks:
                h.remove()

    # ---- helpers ----------------------------------------------------------------------------------
    def fresh(self, shape: Iterable[int], origin: str, pin: tuple[str, str] | None = None,
              producer: str | None = None) -> list[Layout]:
        return [((self.S.new(n, f"{origin}.dim{i}", pin, producer), 1),) for i, n in enumerate(shape)]

    def val(self, x: Any) -> Any:
        return self.values.get(x) if isinstance(x, fx.Node) else None

    def tv(self, x: Any) -> TV | None:
        v = self.val(x)
        return v if isinstance(v, TV) else None

    def out_shape(self, node: fx.Node) -> tuple[int, ...] | None:
        m = tensor_meta(node)
        return tuple(int(s) for s in m.shape) if m is not None else None

    def unify(self, a: Layout, b: Layout) -> None:
        self.S.unify(a, b)

    def pin_tv(self, v: TV, kind: str, reason: str) -> None:
        for layout in v.dims:
            self.S.pin_layout(layout, kind, reason)

    def fixed_dims(self, shape: Iterable[int], node: fx.Node, what: str) -> list[Layout]:
        return self.fresh(shape, node.name, (PIN_SHAPE, f"{what} of node '{node.name}'"))

    def barrier(self, node: fx.Node, what: str) -> Any:
        tensors = [v for v in (self.tv(a) for a in node.all_input_nodes) if v is not None]
        self.barriers.append(Barrier(node.name, what, [lay for v in tensors for lay in v.dims]))
        return self._opaque_output(node, what)

    def _opaque_output(self, node: fx.Node, what: str) -> Any:
        meta = node.meta.get("tensor_meta")
        pin = (PIN_UNSUPPORTED, f"output of node '{node.name}' ({what})")

        def build(m: Any) -> Any:
            if m is None:
                return None
            if hasattr(m, "shape"):
                shape = tuple(int(s) for s in m.shape)
                return TV(shape, self.fresh(shape, node.name, pin))
            if isinstance(m, (list, tuple)):
                return type(m)(build(x) for x in m)
            return None

        return build(meta)

    def broadcast(self, node: fx.Node, operands: list[Any], shape: tuple[int, ...]) -> TV:
        """Elementwise op with numpy broadcasting: equal-sized dims agree, size-1 dims that broadcast
        against a larger one are pinned (a single channel cannot be widened)."""
        tvs = [v for v in (self.tv(o) for o in operands) if v is not None]
        dims: list[Layout] = []
        for pos in range(1, len(shape) + 1):
            n = shape[-pos]
            same = [v.dims[-pos] for v in tvs if len(v.shape) >= pos and v.shape[-pos] == n]
            for v in tvs:
                if len(v.shape) >= pos and v.shape[-pos] != n:
                    self.S.pin_layout(v.dims[-pos], PIN_BROADCAST, f"broadcast at node '{node.name}'")
            if same:
                for other in same[1:]:
                    self.unify(same[0], other)
                dims.append(same[0])
            else:
                dims.append(self.fixed_dims([n], node, "broadcast dimension")[0])
        return TV(shape, list(reversed(dims)))

    def hazard(self, node: fx.Node, what: str, layout: Layout, uniform_ok: bool) -> None:
        self.hazards.append(Hazard(node.name, what, layout, uniform_ok))

    # ---- dispatch -----------------------------------------------------------------------------------
    def _visit(self, node: fx.Node) -> Any:
        shape = self.out_shape(node)
        if node.op == "placeholder":
            if shape is None:
                return None
            return TV(shape, self.fresh(shape, node.name, (PIN_INPUT, f"model input '{node.name}'")))
        if node.op == "output":
            for n in node.all_input_nodes:
                self._pin_value(self.val(n), f"model output (node '{n.name}')")
            return None
        if node.op == "get_attr":
            return self._get_attr(node, shape)
        if node.meta.get("tensor_meta") is None:
            return None  # sizes, shapes, asserts and other non-tensor values
        if node.op == "call_module":
            return self._module(node, shape)
        if not any(self.val(a) is not None for a in node.all_input_nodes):
            return self.barrier(node, "creates a tensor from sizes or constants")
        if node.op == "call_function" and node.target is operator.getitem:
            return self._getitem(node, shape)
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        fn = node.target if node.op == "call_function" else None
        if fn in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and name in _ELEMENTWISE_METHODS):
            return self.broadcast(node, [node.args[0]], shape)
        if fn in _BINARY_FUNCTIONS or (node.op == "call_method" and name in _BINARY_METHODS):
            operands = [*node.args, *node.kwargs.values()]
            return self.broadcast(node, operands, shape)
        if node.op == "call_method" and name == "expand_as":
            return self.broadcast(node, [node.args[0], node.args[1]], shape)
        if fn in (torch.cat, torch.concat, torch.concatenate):
            return self._cat(node, shape)
        if fn is torch.stack:
            return self._stack(node, shape)
        if name in ("split", "chunk", "tensor_split", "unbind") and (fn is not None or node.op == "call_method"):
            return self._split(node, name)
        if fn is torch.narrow or (node.op == "call_method" and name == "narrow"):
            return self._narrow(node, shape)
        if (node.op == "call_method" and name in _VIEW_METHODS) or fn is torch.reshape:
            return self._view(node, shape, rewrite=True)
        if name in ("flatten", "unflatten", "squeeze", "unsqueeze") and (fn is not None or node.op == "call_method"):
            return self._view(node, shape, rewrite=(name == "unflatten"))
        if name in ("permute", "transpose", "swapaxes", "movedim", "t") and (
                fn is not None or node.op == "call_method"):
            return self._permute(node, shape, name)
        if node.op == "call_method" and name == "expand":
            return self._expand(node, shape)
        red = _REDUCTION_FUNCTIONS.get(fn) if fn is not None else (name if name in _REDUCTIONS else None)
        if red is not None:
            return self._reduce(node, red)
        if fn in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax) or (
                node.op == "call_method" and name in ("softmax", "log_softmax")):
            return self._softmax(node, shape)
        if fn in _SPATIAL_FUNCTIONS:
            return self._spatial(node, self.tv(node.args[0]), shape)
        if fn is F.pad:
            return self._pad(node, shape)
        if fn is F.layer_norm:
            return self._layer_norm_fn(node, shape)
        if fn is F.group_norm:
            return self._group_norm_fn(node, shape)
        if fn is F.batch_norm:
            return self._batch_norm_fn(node, shape)
        return self.barrier(node, f"the analysis does not know {_describe(node)}")

    def _pin_value(self, v: Any, reason: str) -> None:
        if isinstance(v, TV):
            self.pin_tv(v, PIN_OUTPUT, reason)
        elif isinstance(v, (list, tuple)):
            for x in v:
                self._pin_value(x, reason)



def channel_analysis(gm: fx.GraphModule, example_inputs: Any) -> ChannelAnalysis:
    """Shape-propagate ``gm`` on ``example_inputs`` and analyse how its channel dimensions couple."""
    return ChannelAnalysis(gm, as_args(example_inputs))
