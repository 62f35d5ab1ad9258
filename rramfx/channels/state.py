"""What the channel rules read and write: the analysis's state and the helpers every rule shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from rramfx.channels.registry import RuleSet
from rramfx.channels.spaces import PIN_BROADCAST, PIN_SHAPE, PIN_UNSUPPORTED, Layout, Spaces
from rramfx.channels.values import TV, Barrier, Hazard, ModuleUse
from rramfx.graph.shapes import tensor_meta

__all__ = ["AnalysisState"]


class AnalysisState:
    """The state of a coupling analysis and the operations rules perform on it.

    ``S`` (the `Spaces`), ``values`` (node → TV or tuple of TV), ``modules`` (layer path →
    ModuleUse), ``params`` (parameter/buffer name → {dim: layout} for tensors read with get_attr),
    ``rewrites`` (nodes whose constant arguments depend on channel counts: ``(node, kind, data)``),
    ``hazards``, ``barriers``, ``producer_layouts`` (every layer's output layout, for rounding) and
    ``leaf_calls`` (the layers a leaf module ran, in order, for leaf modules that hide layers).
    Every record a rule makes goes through a method here, which logs it for the registry's contract
    check (`RuleSet`).
    """

    def __init__(self, gm: fx.GraphModule, rules: RuleSet) -> None:
        self.gm = gm
        self.rules = rules
        self.S = Spaces()
        self.values: dict[fx.Node, Any] = {}
        self.modules: dict[str, ModuleUse] = {}
        self.params: dict[str, dict[int, Layout]] = {}
        self.rewrites: list[tuple[fx.Node, str, Any]] = []
        self.hazards: list[Hazard] = []
        self.barriers: list[Barrier] = []
        self.producer_layouts: list[Layout] = []
        self.leaf_calls: dict[str, list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]] = {}
        self.log: list[str] = []

    # ---- reading values ---------------------------------------------------------------------------
    def val(self, x: Any) -> Any:
        """The analysis's value of a node argument (None for constants and unknown values)."""
        return self.values.get(x) if isinstance(x, fx.Node) else None

    def tv(self, x: Any) -> TV | None:
        """The tensor value of a node argument, or None."""
        v = self.val(x)
        return v if isinstance(v, TV) else None

    def out_shape(self, node: fx.Node) -> tuple[int, ...] | None:
        """The node's output shape when it is one tensor."""
        m = tensor_meta(node)
        return tuple(int(s) for s in m.shape) if m is not None else None

    # ---- making layouts ---------------------------------------------------------------------------
    def fresh(self, shape: Iterable[int], origin: str, pin: tuple[str, str] | None = None,
              producer: str | None = None) -> list[Layout]:
        """One new space per dimension of ``shape``."""
        return [((self.S.new(n, f"{origin}.dim{i}", pin, producer), 1),) for i, n in enumerate(shape)]

    def fixed_dims(self, shape: Iterable[int], node: fx.Node, what: str) -> list[Layout]:
        """New pinned spaces for dimensions that are sizes, not channels."""
        return self.fresh(shape, node.name, (PIN_SHAPE, f"{what} of node '{node.name}'"))

    def unify(self, a: Layout, b: Layout) -> None:
        """Make two layouts of one dimension agree (see `Spaces.unify`)."""
        self.S.unify(a, b)

    def pin_tv(self, v: TV, kind: str, reason: str) -> None:
        """Pin every dimension of a tensor value."""
        for layout in v.dims:
            self.S.pin_layout(layout, kind, reason)

    def broadcast(self, node: fx.Node, operands: list[Any], shape: tuple[int, ...]) -> TV:
        """Elementwise op with numpy broadcasting over the tensor values among ``operands``: equal-sized
        dims agree, size-1 dims that broadcast against a larger one are pinned (a single channel
        cannot be widened)."""
        tvs = [v for v in operands if isinstance(v, TV)]
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

    # ---- records ----------------------------------------------------------------------------------
    def effects(self) -> int:
        """A mark in the record log (for `effects_since`)."""
        return len(self.log)

    def effects_since(self, mark: int) -> set[str]:
        """The kinds of record made since ``mark``."""
        return set(self.log[mark:])

    def barrier(self, node: fx.Node, what: str) -> Any:
        """An operation the analysis cannot see through: its output gets unsupported spaces and the
        channels of its inputs cannot be widened."""
        self.log.append("barrier")
        tensors = [v for v in (self.tv(a) for a in node.all_input_nodes) if v is not None]
        self.barriers.append(Barrier(node.name, what, [lay for v in tensors for lay in v.dims]))
        return self.opaque_output(node, what)

    def opaque_output(self, node: fx.Node, what: str) -> Any:
        """Values for the node's outputs whose spaces are pinned as unsupported."""
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

        return build(node.meta.get("tensor_meta"))

    def hazard(self, node: fx.Node, what: str, layout: Layout, uniform_ok: bool, remedy: str | None = None,
               data: Any = None) -> None:
        """An operation whose result changes when the channels of ``layout`` are duplicated (see
        `Hazard` for the remedy)."""
        self.log.append("hazard")
        self.hazards.append(Hazard(node.name, what, layout, uniform_ok, remedy, data))

    def rewrite(self, node: fx.Node, kind: str, data: Any) -> None:
        """A node whose constant arguments the widening pass must rewrite (``kind`` says how)."""
        self.log.append(f"rewrite:{kind}")
        self.rewrites.append((node, kind, data))

    def use(self, path: str, kind: str, layouts: dict[str, Layout]) -> None:
        """Record (or, for a module called twice, unify) the channel layouts of a layer."""
        self.log.append("layer")
        prev = self.modules.get(path)
        if prev is None:
            self.modules[path] = ModuleUse(path, kind, layouts)
            return
        for key, lay in layouts.items():
            if prev.layouts.get(key) is not None and lay is not None:
                self.unify(prev.layouts[key], lay)

    def produced(self, layout: Layout) -> None:
        """A layer's output layout, which rounding to the divisor must respect."""
        self.producer_layouts.append(layout)

    def param(self, target: str, dims: list[Layout]) -> None:
        """A parameter or buffer read with get_attr: its dims are copied per channel when widened."""
        self.log.append("param")
        prev = self.params.get(target)
        if prev is not None:
            for d, lay in prev.items():
                self.unify(lay, dims[d])
        else:
            self.params[target] = dict(enumerate(dims))

    def apply_module(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        """Apply the registered rule of module ``m`` (at ``path``) to input ``x``."""
        found = self.rules.for_module(m)
        if found is None:
            return self.barrier(node, f"leaf module of unknown type {type(m).__name__}")
        return found.apply(self, node, path, m, x, shape)
