"""Channel-coupling analysis on a torch.fx graph: which channel dimensions must keep the same size
and order, so that a pass can change a network's width without breaking it.

Every dimension of every tensor in the graph gets a *layout*: a list of segments ``(space, inner)``.
A *space* is a set of channels whose size and order several tensors share (a convolution's output
channels, the BatchNorm that follows, the residual stream they are added to, ...); ``inner`` is how
many consecutive elements each channel of the space occupies in that dimension (1 for a channel
dimension, H·W after flattening C×H×W, the group size for GroupNorm). A concatenation is the
concatenation of its inputs' layouts; a slice, split or reshape *refines* a space into parts.
Spaces live in a union-find structure: whenever two dimensions must agree (both operands of an
addition, the input of a layer and the output it is applied to, a weight and its activation),
their layouts are unified, refining spaces where they only partly overlap.

A space can be widened when some convolution or linear layer produces it and nothing pins it:
the model's input channels and outputs are pinned, so are dimensions that broadcast a single
channel, and operations the analysis does not know. Each widened space gets an index map (new
channel → the old channel it copies), from which the widening pass rewrites every weight,
every norm layer and every constant shape argument that touches the space.

Operations whose result would change when channels are duplicated (a LayerNorm over a
non-uniformly widened dimension, a sum or softmax over channels, a convolution sliding along the
channel axis as in ECA attention) are recorded as *hazards*: they do not stop a widening, but
they make an exactly function-preserving one impossible.
"""

from __future__ import annotations

import copy
import itertools
import math
import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import PassError
from .graph import as_args, is_conv, is_weighted, shape_prop, tensor_meta

Seg = tuple[int, int]  # (space id, inner)
Layout = tuple[Seg, ...]

# Why a space is pinned. Input, output, broadcast and shape pins are the model's nature; the others
# mean an operation the analysis could not see through, or channels kept on request.
PIN_INPUT = "model input"
PIN_OUTPUT = "model output"
PIN_BROADCAST = "broadcast"
PIN_SHAPE = "shape"  # spatial sizes, stacked dims, new axes: sizes that are not channels
PIN_UNSUPPORTED = "unsupported"
PIN_KEPT = "kept"


class _Mismatch(Exception):
    """Two layouts cannot be made to agree (internal; turned into a PassError naming the node)."""


# ---- spaces --------------------------------------------------------------------------------------

class Spaces:
    """Union-find over channel spaces, with refinement of a space into consecutive parts."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.origin: list[str] = []
        self.children: dict[int, list[Seg]] = {}
        self.pinned: dict[int, tuple[str, str]] = {}  # root -> (kind, reason)
        self.producers: dict[int, set[str]] = {}  # root -> layers that compute it

    def new(self, size: int, origin: str, pin: tuple[str, str] | None = None, producer: str | None = None) -> int:
        i = len(self.parent)
        self.parent.append(i)
        self.size.append(int(size))
        self.origin.append(origin)
        if pin is not None:
            self.pinned[i] = pin
        if producer is not None:
            self.producers[i] = {producer}
        return i

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    # flags flow from a space to the parts it is refined into
    def _push(self, root: int) -> None:
        pin, prod = self.pinned.get(root), self.producers.get(root)
        for child, _ in self.children.get(root, ()):
            c = self.find(child)
            changed = False
            if pin is not None and c not in self.pinned:
                self.pinned[c] = pin
                changed = True
            if prod and not prod <= self.producers.get(c, set()):
                self.producers[c] = self.producers.get(c, set()) | prod
                changed = True
            if changed:
                self._push(c)

    def pin(self, x: int, kind: str, reason: str) -> None:
        r = self.find(x)
        if r not in self.pinned:
            self.pinned[r] = (kind, reason)
        self._push(r)

    def pin_layout(self, layout: Layout, kind: str, reason: str) -> None:
        for s, _ in layout:
            self.pin(s, kind, reason)

    def add_producer(self, x: int, name: str) -> None:
        r = self.find(x)
        self.producers.setdefault(r, set()).add(name)
        self._push(r)

    def refine(self, root: int, parts: list[Seg]) -> None:
        self.children[root] = parts
        self._push(root)

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise _Mismatch(f"sizes {self.size[a]} and {self.size[b]}")
        self.parent[b] = a
        pb = self.pinned.pop(b, None)
        if pb is not None and a not in self.pinned:
            self.pinned[a] = pb
        prod_b = self.producers.pop(b, None)
        if prod_b:
            self.producers[a] = self.producers.get(a, set()) | prod_b
        ca, cb = self.children.get(a), self.children.pop(b, None)
        if ca is None and cb is not None:
            self.children[a] = cb
        self._push(a)
        if ca is not None and cb is not None:
            self.unify(tuple(ca), tuple(cb))
            self._push(a)

    # layouts
    def expand(self, layout: Iterable[Seg]) -> list[Seg]:
        """A layout in terms of unrefined spaces (roots)."""
        out: list[Seg] = []
        stack = list(reversed(list(layout)))
        while stack:
            s, inner = stack.pop()
            r = self.find(s)
            parts = self.children.get(r)
            if parts is None:
                out.append((r, inner))
            else:
                stack.extend(reversed([(c, ci * inner) for c, ci in parts]))
        return out

    def numel(self, layout: Iterable[Seg]) -> int:
        return sum(self.size[self.find(s)] * inner for s, inner in layout)

    def _split(self, root: int, n: int) -> tuple[int, int]:
        a = self.new(n, self.origin[root] + f"[:{n}]")
        b = self.new(self.size[root] - n, self.origin[root] + f"[{n}:]")
        self.refine(root, [(a, 1), (b, 1)])
        return a, b

    def _group(self, root: int, k: int) -> list[Seg]:
        m, rest = divmod(self.size[root], k)
        c = self.new(m, self.origin[root] + f"/{k}")
        parts = [(c, k)]
        if rest:
            parts.append((self.new(rest, self.origin[root] + f"[{m * k}:]"), 1))
        self.refine(root, parts)
        return parts

    def unify(self, l1: Layout, l2: Layout) -> None:
        """Make two layouts of the same dimension agree, refining spaces where needed."""
        if self.numel(self.expand(l1)) != self.numel(self.expand(l2)):
            raise _Mismatch(f"{self.numel(self.expand(l1))} vs {self.numel(self.expand(l2))} elements")
        q1, q2 = deque(self.expand(l1)), deque(self.expand(l2))
        while q1 and q2:
            (a, ia), (b, ib) = q1[0], q2[0]
            a, b = self.find(a), self.find(b)
            if a in self.children:
                q1.popleft()
                q1.extendleft(reversed(self.expand([(a, ia)])))
                continue
            if b in self.children:
                q2.popleft()
                q2.extendleft(reversed(self.expand([(b, ib)])))
                continue
            if ia == ib:
                na, nb = self.size[a], self.size[b]
                if na == nb:
                    self.union(a, b)
                    q1.popleft()
                    q2.popleft()
                elif na < nb:
                    b1, b2 = self._split(b, na)
                    q2[0] = (b2, ib)
                    q2.appendleft((b1, ib))
                else:
                    a1, a2 = self._split(a, nb)
                    q1[0] = (a2, ia)
                    q1.appendleft((a1, ia))
                continue
            # different inner sizes: the finer side is grouped into blocks of the coarser one
            if ia < ib:
                q1, q2, (a, ia), (b, ib) = q2, q1, (b, ib), (a, ia)
            if ia % ib or self.size[b] * ib < ia:
                raise _Mismatch(f"a block of {ia} elements against blocks of {ib}")
            parts = self._group(b, ia // ib)
            q2.popleft()
            q2.extendleft(reversed([(c, ci * ib) for c, ci in parts]))
        if q1 or q2:
            raise _Mismatch("layouts of different length")


# ---- values flowing through the graph ------------------------------------------------------------

@dataclass
class TV:
    """A tensor value: its shape and one layout per dimension."""

    shape: tuple[int, ...]
    dims: list[Layout]


@dataclass
class Hazard:
    """An operation that would change its result if the channels of ``layout`` were duplicated.
    ``uniform_ok``: it is exact when every space in the layout is duplicated the same whole number of
    times (means, norms over channels)."""

    node: str
    what: str
    layout: Layout
    uniform_ok: bool


@dataclass
class Barrier:
    """An operation the analysis cannot see through; the spaces it touches cannot be widened."""

    node: str
    what: str
    layouts: list[Layout]


@dataclass
class ModuleUse:
    """How a layer module's channels are laid out (the same for every call of a shared module)."""

    path: str
    kind: str  # conv | linear | bn | gn | ln | prelu
    layouts: dict[str, Layout] = field(default_factory=dict)


_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
)
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.LogSigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Threshold,
    nn.Tanhshrink,
)
_ELEMENTWISE_FUNCTIONS = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg, torch.sqrt,
    torch.rsqrt, torch.clamp, torch.clip, torch.sign, torch.erf, torch.log, torch.square,
    F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_,
    F.leaky_relu, F.leaky_relu_, F.elu, F.selu, F.celu, F.softplus, F.sigmoid, F.tanh, F.logsigmoid,
    F.dropout, F.alpha_dropout, F.dropout1d, F.dropout2d, F.dropout3d, operator.neg, torch.clamp_min,
}
_ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "abs", "neg", "sqrt", "rsqrt",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clip", "contiguous", "clone", "detach",
    "float", "half", "double", "bfloat16", "to", "type_as", "type", "square", "log", "erf", "sign",
    "hardtanh_", "exp_", "requires_grad_",
}
_BINARY_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div,
    torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow, torch.lerp,
}
_BINARY_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "true_divide", "maximum", "minimum",
    "pow", "pow_", "lerp", "addcmul", "where",
}
_REDUCTIONS = {  # name -> hazard kind over the reduced dims: None, "uniform" or "any"
    "mean": "uniform", "sum": "any", "amax": None, "amin": None, "max": None, "min": None,
    "std": "any", "var": "any", "prod": "any", "logsumexp": "any", "nansum": "any", "nanmean": "uniform",
    "norm": "any", "median": None,
}
_REDUCTION_FUNCTIONS = {getattr(torch, n): n for n in _REDUCTIONS if hasattr(torch, n)}
_VIEW_METHODS = {"view", "reshape"}
_SPATIAL_FUNCTIONS = {
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.interpolate, F.upsample, F.lp_pool2d,
    torch.max_pool2d, torch.avg_pool1d, torch.adaptive_avg_pool1d,
}


def _is_known_leaf(m: nn.Module) -> bool:
    return (
        is_weighted(m) or isinstance(m, (*_ELEMENTWISE_MODULES, *_POOL_MODULES, nn.modules.batchnorm._BatchNorm,
                                         nn.GroupNorm, nn.LayerNorm, nn.PReLU, nn.Flatten))
    )


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"{getattr(node.target, '__name__', node.target)}()"


class ChannelAnalysis:
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

    # ---- parameters read with get_attr ---------------------------------------------------------------
    def _get_attr(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        if shape is None:
            return None
        dims = self.fresh(shape, node.target)
        prev = self.params.get(node.target)
        if prev is not None:
            for d, lay in prev.items():
                self.unify(lay, dims[d])
        else:
            self.params[node.target] = dict(enumerate(dims))
        return TV(shape, dims)

    # ---- modules ------------------------------------------------------------------------------------
    def _module(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        m = self.gm.get_submodule(node.target)
        x = self.tv(node.args[0]) if node.args else None
        if x is None or shape is None:
            return self.barrier(node, "a module call without a single tensor input and output")
        return self._apply_module(node, node.target, m, x, shape)

    def _apply_module(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        if is_conv(m):
            return self._conv(node, path, m, x, shape)
        if isinstance(m, nn.Linear):
            return self._linear(node, path, m, x, shape)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self._norm_per_channel(node, path, "bn", x, shape)
        if type(m) is nn.GroupNorm:
            return self._group_norm(node, path, m.num_groups, x, shape)
        if type(m) is nn.LayerNorm:
            return self._layer_norm(node, path, len(m.normalized_shape), x, shape)
        if isinstance(m, nn.PReLU):
            if m.num_parameters == 1:
                return self.broadcast(node, [node.args[0]], shape) if node.args else TV(shape, list(x.dims))
            return self._norm_per_channel(node, path, "prelu", x, shape)
        if isinstance(m, _ELEMENTWISE_MODULES):
            return TV(shape, list(x.dims)) if x.shape == shape else self.barrier(node, "changes shape")
        if isinstance(m, _POOL_MODULES):
            return self._spatial(node, x, shape)
        if isinstance(m, nn.Flatten):
            return self._reshape(node, x, shape, None)
        if path in self.leaf_calls:
            return self._leaf_chain(node, path, m, x, shape)
        if any(True for _ in m.parameters()):
            return self.barrier(node, f"leaf module of unknown type {type(m).__name__} holds parameters")
        return self.barrier(node, f"leaf module of unknown type {type(m).__name__}")

    def _use(self, path: str, kind: str, layouts: dict[str, Layout]) -> None:
        """Record (or, for a module called twice, unify) the channel layouts of a layer."""
        prev = self.modules.get(path)
        if prev is None:
            self.modules[path] = ModuleUse(path, kind, layouts)
            return
        for key, lay in layouts.items():
            self.unify(prev.layouts[key], lay)

    def _conv(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> TV:
        nsp = len(m.kernel_size)
        if len(x.shape) != nsp + 2:
            return self.barrier(node, "a convolution on unbatched input")
        cin, cout, g = m.in_channels, m.out_channels, m.groups
        lin = x.dims[1]
        if g == 1:
            out = self.fresh([cout], path, producer=path)[0]
            self._use(path, "conv", {"in": lin, "out": out})
            self.producer_layouts.append(out)
        elif g == cin:  # depthwise (with channel multiplier cout // cin)
            mult = cout // cin
            out = tuple((s, i * mult) for s, i in self.S.expand(lin))
            self._use(path, "conv", {"in": lin, "out": out, "depthwise": ()})
        else:
            pin_ = self.S.new(cin // g, f"{path}.group_in")
            self.unify(lin, ((pin_, 1),) * g)
            pout = self.S.new(cout // g, f"{path}.group_out", producer=path)
            out = ((pout, 1),) * g
            self._use(path, "conv", {"in": lin, "in_group": ((pin_, 1),), "out": out})
            self.producer_layouts.append(out)
        dims = [x.dims[0], out]
        stride = m.stride if isinstance(m.stride, tuple) else (m.stride,) * nsp
        for i in range(nsp):
            n_in, n_out = x.shape[2 + i], shape[2 + i]
            if n_in == n_out and stride[i] == 1 and m.kernel_size[i] > 1:
                # a convolution sliding along a dimension that may carry channels (ECA attention)
                dims.append(x.dims[2 + i])
                self.hazard(node, f"convolution '{path}' slides along it", x.dims[2 + i], False)
            elif n_in == n_out and m.kernel_size[i] == 1 and stride[i] == 1:
                dims.append(x.dims[2 + i])
            else:
                self.S.pin_layout(x.dims[2 + i], PIN_SHAPE, f"spatial dimension resized by '{path}'")
                dims.append(self.fixed_dims([n_out], node, "spatial dimension")[0])
        return TV(shape, dims)

    def _linear(self, node: fx.Node, path: str, m: nn.Linear, x: TV, shape: tuple[int, ...]) -> TV:
        out = self.fresh([m.out_features], path, producer=path)[0]
        self._use(path, "linear", {"in": x.dims[-1], "out": out})
        self.producer_layouts.append(out)
        return TV(shape, [*x.dims[:-1], out])

    def _norm_per_channel(self, node: fx.Node, path: str, kind: str, x: TV, shape: tuple[int, ...]) -> TV:
        self._use(path, kind, {"c": x.dims[1]})
        return TV(shape, list(x.dims))

    def _group_layout(self, node: fx.Node, what: str, lay: Layout, groups: int) -> Layout | None:
        """GroupNorm's channels as whole groups: widening duplicates groups, never splits one, so
        every group keeps its statistics. One group (a LayerNorm over channels) is a hazard instead,
        and returns None (the group count stays 1)."""
        c = self.S.numel(self.S.expand(lay))
        if groups == c:
            return lay
        if groups == 1:
            self.hazard(node, f"{what} normalises over all channels", lay, True)
            return None
        gs = self.S.new(groups, f"{node.name}.groups")
        self.unify(lay, ((gs, c // groups),))
        return ((gs, 1),)

    def _group_norm(self, node: fx.Node, path: str, groups: int, x: TV, shape: tuple[int, ...]) -> TV:
        glay = self._group_layout(node, f"GroupNorm '{path}'", x.dims[1], groups)
        self._use(path, "gn", {"c": x.dims[1], "groups": glay})
        return TV(shape, list(x.dims))

    def _layer_norm(self, node: fx.Node, path: str, ndims: int, x: TV, shape: tuple[int, ...]) -> TV:
        for d in range(len(x.shape) - ndims, len(x.shape)):
            self.hazard(node, f"LayerNorm '{path}' normalises over it", x.dims[d], True)
        self._use(path, "ln", {f"n{i}": x.dims[len(x.shape) - ndims + i] for i in range(ndims)})
        return TV(shape, list(x.dims))

    def _leaf_chain(self, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        """A leaf module that hides layers (traced as one node) is followed when its layers ran as one
        chain on the example input: each called layer consumed the previous one's output."""
        calls = self.leaf_calls.get(path) or []
        if any(True for _ in m.parameters(recurse=False)) or not calls:
            return self.barrier(node, f"leaf module '{path}' hides layers the analysis cannot follow")
        first_in = calls[0][2]
        ok = first_in.dim() == len(x.shape) and tuple(first_in.shape[:2]) == x.shape[:2]
        for prev, cur in itertools.pairwise(calls):
            ok = ok and cur[2] is prev[3]
        called = {id(c[1]) for c in calls}
        ok = ok and all(id(sub) in called for sub in m.modules() if is_weighted(sub))
        ok = ok and tuple(calls[-1][3].shape) == shape
        if not ok:
            return self.barrier(
                node, f"leaf module '{path}' hides layers that do not run as one chain; make it traceable")
        cur = x
        if tuple(first_in.shape) != x.shape:  # spatial resizing before the first layer
            cur = self._spatial(node, x, tuple(first_in.shape))
        for name, sub, _, out in calls:
            cur = self._apply_module(node, f"{path}.{name}", sub, cur, tuple(out.shape))
            if not isinstance(cur, TV):
                return cur
        return cur

    # ---- shape functions ----------------------------------------------------------------------------
    def _spatial(self, node: fx.Node, x: TV | None, shape: tuple[int, ...]) -> Any:
        """Pooling, resizing and padding: batch and channel dims pass, the others are spatial."""
        if x is None or shape is None or len(shape) != len(x.shape) or len(shape) < 3:
            return self.barrier(node, "a spatial operation on an unexpected shape")
        dims = [x.dims[0], x.dims[1]]
        for i in range(2, len(shape)):
            self.S.pin_layout(x.dims[i], PIN_SHAPE, f"spatial dimension of node '{node.name}'")
            dims.append(x.dims[i] if x.shape[i] == shape[i] else self.fixed_dims([shape[i]], node, "spatial")[0])
        if x.shape[1] != shape[1]:
            return self.barrier(node, "changes the channel count")
        return TV(shape, dims)

    def _pad(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        if x is None or not isinstance(pad, (list, tuple)) or not all(isinstance(p, int) for p in pad):
            return self.barrier(node, "padding by sizes the analysis cannot read")
        dims = list(x.dims)
        for k in range(len(pad) // 2):
            d = len(x.shape) - 1 - k
            if pad[2 * k] or pad[2 * k + 1]:
                self.S.pin_layout(x.dims[d], PIN_SHAPE, f"padded dimension at node '{node.name}'")
                dims[d] = self.fixed_dims([shape[d]], node, "padded dimension")[0]
        return TV(shape, dims)

    def _getitem(self, node: fx.Node, shape: tuple[int, ...] | None) -> Any:
        base, idx = node.args[0], node.args[1]
        v = self.val(base)
        if v is None:
            return None
        if isinstance(v, (list, tuple)):
            return v[idx] if isinstance(idx, int) else v[idx] if isinstance(idx, slice) else None
        if shape is None:
            return self.barrier(node, "indexing that does not return a tensor")
        items = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
            return self.barrier(node, "indexing with tensors or sizes computed at run time")
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        expanded: list[Any] = []
        for i in items:
            if i is Ellipsis:
                expanded.extend([slice(None)] * (len(v.shape) - n_real))
            else:
                expanded.append(i)
        expanded.extend([slice(None)] * (len(v.shape) - sum(1 for i in expanded if i is not None)))
        dims: list[Layout] = []
        d = 0
        slices: list[tuple[int, Layout, Layout]] = []
        for pos, i in enumerate(expanded):
            if i is None:
                dims.append(self.fixed_dims([1], node, "new axis")[0])
                continue
            n = v.shape[d]
            if isinstance(i, int):
                self.S.pin_layout(v.dims[d], PIN_UNSUPPORTED, f"indexed with an integer at node '{node.name}'")
            elif isinstance(i, slice):
                start, stop, step = i.indices(n)
                if step != 1:
                    self.S.pin_layout(v.dims[d], PIN_UNSUPPORTED, f"strided slice at node '{node.name}'")
                    dims.append(self.fixed_dims([len(range(start, stop, step))], node, "strided slice")[0])
                elif (start, stop) == (0, n):
                    dims.append(v.dims[d])
                    if i.start is not None or i.stop is not None:  # explicit bounds: rewrite them too
                        slices.append((pos, (), v.dims[d]))
                else:
                    stop = max(stop, start)
                    head, mid, tail = (self.S.new(k, f"{node.name}.slice") if k else None
                                       for k in (start, stop - start, n - stop))
                    parts = tuple((s, 1) for s in (head, mid, tail) if s is not None)
                    self.unify(v.dims[d], parts)
                    mid_lay: Layout = ((mid, 1),) if mid is not None else ()
                    slices.append((pos, ((head, 1),) if head is not None else (), mid_lay))
                    dims.append(mid_lay if mid is not None else self.fixed_dims([0], node, "empty slice")[0])
            d += 1
        if slices:
            self.rewrites.append((node, "getitem", (expanded, slices)))
        return TV(shape, dims)

    def _dim_arg(self, node: fx.Node, pos: int, name: str, default: Any, ndim: int) -> Any:
        args = node.args
        val = args[pos] if len(args) > pos else node.kwargs.get(name, default)
        if isinstance(val, int):
            return val % ndim if ndim else val
        if isinstance(val, (list, tuple)):
            return tuple(int(v) % ndim for v in val)
        return val

    def _cat(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        tvs = [self.tv(t) for t in tensors]
        if any(t is None for t in tvs):
            return self.barrier(node, "concatenates something that is not a graph tensor")
        d = self._dim_arg(node, 1, "dim", 0, len(shape))
        dims = []
        for k in range(len(shape)):
            if k == d:
                dims.append(tuple(seg for t in tvs for seg in t.dims[k]))
            else:
                for t in tvs[1:]:
                    self.unify(tvs[0].dims[k], t.dims[k])
                dims.append(tvs[0].dims[k])
        return TV(shape, dims)

    def _stack(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        tvs = [self.tv(t) for t in tensors]
        if any(t is None for t in tvs):
            return self.barrier(node, "stacks something that is not a graph tensor")
        d = self._dim_arg(node, 1, "dim", 0, len(shape))
        for t in tvs[1:]:
            for a, b in zip(tvs[0].dims, t.dims, strict=True):
                self.unify(a, b)
        dims = list(tvs[0].dims)
        dims.insert(d, self.fixed_dims([len(tvs)], node, "stacked dimension")[0])
        return TV(shape, dims)

    def _split(self, node: fx.Node, name: str) -> Any:
        x = self.tv(node.args[0])
        metas = node.meta.get("tensor_meta")
        if x is None or not isinstance(metas, (list, tuple)) or hasattr(metas, "shape"):
            return self.barrier(node, f"{name} of something the analysis cannot read")
        shapes = [tuple(int(s) for s in m.shape) for m in metas]
        if name == "unbind":
            d = self._dim_arg(node, 1, "dim", 0, len(x.shape))
            self.S.pin_layout(x.dims[d], PIN_UNSUPPORTED, f"unbound at node '{node.name}'")
            return tuple(TV(s, [lay for k, lay in enumerate(x.dims) if k != d]) for s in shapes)
        default_dim = 0
        d = self._dim_arg(node, 2, "dim", default_dim, len(x.shape))
        if not isinstance(d, int):
            return self.barrier(node, f"{name} along a dimension computed at run time")
        pieces = [s[d] for s in shapes]
        spaces = [self.S.new(k, f"{node.name}.part{i}") if k else None for i, k in enumerate(pieces)]
        self.unify(x.dims[d], tuple((s, 1) for s in spaces if s is not None))
        out = []
        for s, sh in zip(spaces, shapes, strict=True):
            dims = list(x.dims)
            dims[d] = ((s, 1),) if s is not None else self.fixed_dims([0], node, "empty part")[0]
            out.append(TV(sh, dims))
        self.rewrites.append((node, "split", (d, [lay[d] for lay in (o.dims for o in out)])))
        return tuple(out)

    def _narrow(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("dim", "start", "length") if k in node.kwargs]
        if x is None or len(args) < 3 or not all(isinstance(a, int) for a in args[:3]):
            return self.barrier(node, "narrow by sizes computed at run time")
        d, start, length = args[0] % len(x.shape), args[1], args[2]
        n = x.shape[d]
        head, mid, tail = (self.S.new(k, f"{node.name}.part") if k else None
                           for k in (start, length, n - start - length))
        self.unify(x.dims[d], tuple((s, 1) for s in (head, mid, tail) if s is not None))
        dims = list(x.dims)
        dims[d] = ((mid, 1),)
        self.rewrites.append((node, "narrow", (d, ((head, 1),) if head is not None else (), ((mid, 1),))))
        return TV(shape, dims)

    def _permute(self, node: fx.Node, shape: tuple[int, ...], name: str) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, f"{name} of something the analysis cannot read")
        n = len(x.shape)
        rest = list(node.args[1:])
        if name == "permute":
            order = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            if not order:
                order = node.kwargs.get("dims", [])
            order = [int(o) % n for o in order]
        elif name == "t":
            order = list(range(n))[::-1]
        elif name == "movedim":
            src, dst = rest[0] % n, rest[1] % n
            order = [k for k in range(n) if k != src]
            order.insert(dst, src)
        else:
            a, b = (int(r) % n for r in rest[:2])
            order = list(range(n))
            order[a], order[b] = order[b], order[a]
        return TV(shape, [x.dims[o] for o in order])

    def _expand(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, "expand of something the analysis cannot read")
        lead = len(shape) - len(x.shape)
        dims = self.fixed_dims(shape[:lead], node, "expanded dimension")
        for k, n in enumerate(x.shape):
            if n == shape[lead + k]:
                dims.append(x.dims[k])
            else:
                self.S.pin_layout(x.dims[k], PIN_BROADCAST, f"expanded at node '{node.name}'")
                dims.append(self.fresh([shape[lead + k]], node.name, (PIN_UNSUPPORTED,
                                       f"expanded to a constant size at node '{node.name}'"))[0])
        return TV(shape, dims)

    def _reduce(self, node: fx.Node, red: str) -> Any:
        x = self.tv(node.args[0])
        meta = node.meta.get("tensor_meta")
        if x is None:
            return self.barrier(node, f"{red} of something the analysis cannot read")
        n = len(x.shape)
        d = self._dim_arg(node, 1, "dim", None, n)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if d is None:
            reduced = tuple(range(n))
        elif isinstance(d, int):
            reduced = (d,)
        elif isinstance(d, tuple):
            reduced = d
        else:
            return self.barrier(node, f"{red} over dimensions computed at run time")
        kind = _REDUCTIONS[red]
        for k in reduced:
            if kind is not None:
                self.hazard(node, f"{red} over it", x.dims[k], kind == "uniform")
        dims = []
        for k in range(n):
            if k not in reduced:
                dims.append(x.dims[k])
            elif keep:
                dims.append(self.fixed_dims([1], node, "reduced dimension")[0])

        def tv_of(m: Any) -> TV | None:
            return TV(tuple(int(s) for s in m.shape), dims) if hasattr(m, "shape") else None

        if isinstance(meta, (list, tuple)) and not hasattr(meta, "shape"):  # max/min along a dim
            return tuple(tv_of(m) for m in meta)
        return tv_of(meta) if meta is not None else None

    def _softmax(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        d = self._dim_arg(node, 1, "dim", None, len(shape))
        if x is None or not isinstance(d, int):
            return self.barrier(node, "softmax over an implicit dimension")
        self.hazard(node, "softmax over it", x.dims[d], False)
        return TV(shape, list(x.dims))

    def _view(self, node: fx.Node, shape: tuple[int, ...], rewrite: bool) -> Any:
        x = self.tv(node.args[0])
        if x is None or shape is None:
            return self.barrier(node, "reshape of something the analysis cannot read")
        return self._reshape(node, x, shape, node if rewrite else None)

    def _all_pinned(self, lay: Layout) -> bool:
        return all(self.S.find(s) in self.S.pinned for s, _ in self.S.expand(lay))

    def _reshape(self, node: fx.Node, x: TV, shape: tuple[int, ...], rewrite_node: fx.Node | None) -> Any:
        """Match input and output dims into groups of equal product; within a group at most one
        dimension may carry widenable channels (the others are sizes such as H, W or a number of
        paths, which stay as they are)."""
        ins = [(k, n) for k, n in enumerate(x.shape) if n != 1]
        outs = [(k, n) for k, n in enumerate(shape) if n != 1]
        for k, n in enumerate(x.shape):
            if n == 1:
                self.S.pin_layout(x.dims[k], PIN_BROADCAST, f"size-1 dimension reshaped at node '{node.name}'")
        dims: list[Layout | None] = [None] * len(shape)
        i = j = 0
        while i < len(ins) or j < len(outs):
            gi, go = [ins[i]] if i < len(ins) else [], [outs[j]] if j < len(outs) else []
            i, j = i + len(gi), j + len(go)
            pi, po = math.prod(n for _, n in gi), math.prod(n for _, n in go)
            while pi != po:
                if pi < po and i < len(ins):
                    gi.append(ins[i])
                    pi *= ins[i][1]
                    i += 1
                elif po < pi and j < len(outs):
                    go.append(outs[j])
                    po *= outs[j][1]
                    j += 1
                else:
                    return self.barrier(node, "a reshape the analysis cannot match up")
            self._reshape_group(node, x, gi, go, dims)
        for k, n in enumerate(shape):
            if dims[k] is None:
                dims[k] = self.fixed_dims([n], node, "size-1 dimension")[0]
        if rewrite_node is not None:
            self.rewrites.append((rewrite_node, "view", list(dims)))
        return TV(shape, dims)

    def _reshape_group(self, node: fx.Node, x: TV, gi: list, go: list, dims: list) -> None:
        in_lays = [x.dims[k] for k, _ in gi]
        free = [idx for idx, lay in enumerate(in_lays) if not self._all_pinned(lay)]
        if len(gi) == 1 and len(go) == 1:
            dims[go[0][0]] = in_lays[0]
            return
        if not free:
            for k, n in go:
                dims[k] = self.fixed_dims([n], node, "reshaped dimension")[0]
            return
        if len(go) == 1:  # merge: the one channel-carrying dim, blocks of the dims after it, repeated
            if len(free) > 1:
                self.barriers.append(Barrier(node.name, "a reshape merges two channel dimensions",
                                             [in_lays[idx] for idx in free]))
                for idx in free:
                    self.S.pin_layout(in_lays[idx], PIN_UNSUPPORTED,
                                      f"merged with another channel dimension at node '{node.name}'")
            c = free[0]
            pre = math.prod(n for _, n in gi[:c])
            post = math.prod(n for _, n in gi[c + 1:])
            lay = tuple((s, inner * post) for s, inner in self.S.expand(in_lays[c]))
            dims[go[0][0]] = lay * pre
            return
        if len(gi) == 1:  # split: choose the output dim that carries the channels
            lay = in_lays[0]
            for c in reversed(range(len(go))):
                pre = math.prod(n for _, n in go[:c])
                post = math.prod(n for _, n in go[c + 1:])
                trial = copy.deepcopy(self.S)
                y = trial.new(go[c][1], "trial")
                try:
                    trial.unify(lay, ((y, post),) * pre)
                except _Mismatch:
                    continue
                y = self.S.new(go[c][1], f"{node.name}.dim{go[c][0]}")
                self.unify(lay, ((y, post),) * pre)
                for k, (od, n) in enumerate(go):
                    dims[od] = ((y, 1),) if k == c else self.fixed_dims([n], node, "reshaped dimension")[0]
                return
        self.barriers.append(Barrier(node.name, "a reshape that regroups channel dimensions", list(in_lays)))
        for lay in in_lays:
            self.S.pin_layout(lay, PIN_UNSUPPORTED, f"regrouped at node '{node.name}'")
        for k, n in go:
            dims[k] = self.fixed_dims([n], node, "reshaped dimension")[0]

    # ---- functional norms ---------------------------------------------------------------------------
    def _param_dims(self, node: fx.Node, arg: Any, layouts: list[Layout]) -> None:
        v = self.tv(arg)
        if v is None:
            return
        if len(v.dims) != len(layouts):
            self.barrier(node, "a norm parameter of unexpected shape")
            return
        for a, b in zip(v.dims, layouts, strict=True):
            self.unify(a, b)

    def _arg(self, node: fx.Node, pos: int, name: str) -> Any:
        return node.args[pos] if len(node.args) > pos else node.kwargs.get(name)

    def _layer_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        ns = self._arg(node, 1, "normalized_shape")
        if x is None or not isinstance(ns, (list, tuple)) or not all(isinstance(n, int) for n in ns):
            return self.barrier(node, "layer_norm over a shape computed at run time")
        k = len(ns)
        lays = x.dims[len(shape) - k:]
        for lay in lays:
            self.hazard(node, "layer_norm normalises over it", lay, True)
        for pos, name in ((2, "weight"), (3, "bias")):
            self._param_dims(node, self._arg(node, pos, name), lays)
        self.rewrites.append((node, "layer_norm", list(lays)))
        return TV(shape, list(x.dims))

    def _group_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        g = self._arg(node, 1, "num_groups")
        if x is None or not isinstance(g, int):
            return self.barrier(node, "group_norm with a group count computed at run time")
        glay = self._group_layout(node, "group_norm", x.dims[1], g)
        for pos, name in ((2, "weight"), (3, "bias")):
            self._param_dims(node, self._arg(node, pos, name), [x.dims[1]])
        self.rewrites.append((node, "group_norm", glay))
        return TV(shape, list(x.dims))

    def _batch_norm_fn(self, node: fx.Node, shape: tuple[int, ...]) -> Any:
        x = self.tv(node.args[0])
        if x is None:
            return self.barrier(node, "batch_norm of something the analysis cannot read")
        for pos, name in ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias")):
            self._param_dims(node, self._arg(node, pos, name), [x.dims[1]])
        return TV(shape, list(x.dims))


# ---- the widening plan ---------------------------------------------------------------------------

@dataclass
class Kept:
    """Channels that could have been widened but stay as they are, and why."""

    producers: list[str]
    size: int
    reason: str


class WideningPlan:
    """New sizes and index maps for every space of an analysis.

    ``factor`` multiplies every widenable space, rounded to a multiple of ``divisor`` per layer (a
    space that appears g times in a layer's output, as in grouped convolutions, rounds to
    ``divisor / gcd(divisor, g)``). With ``preserve_function`` the hazards are enforced: each one
    raises a PassError (``on_unsupported="raise"``) or pins its channels (``"keep"``).
    Unsupported operations touching widenable channels are handled the same way.
    """

    def __init__(self, analysis: ChannelAnalysis, factor: float, divisor: int, preserve_function: bool,
                 on_unsupported: str) -> None:
        self.a = analysis
        self.S = analysis.S
        self.factor = factor
        self.divisor = divisor
        self.preserve = preserve_function
        self.keep = on_unsupported == "keep"
        self.kept: list[Kept] = []
        self.violated: list[Hazard] = []
        self._resolve_barriers()
        while True:
            self._sizes()
            violated = [h for h in self.a.hazards if self._violates(h)]
            if not violated or not self.preserve:
                self.violated = violated
                break
            if not self.keep:
                raise PassError(self._hazard_message(violated[0], len(violated)))
            for h in violated:
                for s, _ in self.S.expand(h.layout):
                    if self.widened(s):
                        self._keep(s, f"node '{h.node}': {h.what}, so duplicated channels would change it")

    # ---- decisions ---------------------------------------------------------------------------------
    def _leaves(self) -> list[int]:
        return [i for i in range(len(self.S.parent)) if self.S.find(i) == i and i not in self.S.children]

    def widenable(self, s: int) -> bool:
        r = self.S.find(s)
        return bool(self.S.producers.get(r)) and r not in self.S.pinned

    def widened(self, s: int) -> bool:
        r = self.S.find(s)
        return self.new_size[r] != self.S.size[r]

    def describe(self, s: int) -> str:
        prods = sorted(self.S.producers.get(self.S.find(s), ()))
        if not prods:
            return f"channels from {self.S.origin[self.S.find(s)]}"
        more = f" and {len(prods) - 3} more" if len(prods) > 3 else ""
        return f"the {self.S.size[self.S.find(s)]} channels produced by {', '.join(prods[:3])}{more}"

    def _keep(self, s: int, reason: str) -> None:
        r = self.S.find(s)
        if r in self.S.pinned:
            return
        self.kept.append(Kept(sorted(self.S.producers.get(r, ())), self.S.size[r], reason))
        self.S.pin(r, PIN_KEPT, reason)

    def _resolve_barriers(self) -> None:
        for b in self.a.barriers:
            touched = [s for lay in b.layouts for s, _ in self.S.expand(lay) if self.widenable(s)]
            if not touched:
                continue
            if not self.keep:
                raise PassError(
                    f"cannot widen through node '{b.node}': {b.what}. It is coupled to "
                    f"{self.describe(touched[0])}. Make that part traceable with known operations, "
                    "or pass on_unsupported='keep' to leave the channels it touches at their width."
                )
            for s in touched:
                self._keep(s, f"node '{b.node}': {b.what}")
        for r in self._leaves():
            pin = self.S.pinned.get(r)
            if pin and pin[0] == PIN_UNSUPPORTED and self.S.producers.get(r):
                if not self.keep:
                    raise PassError(
                        f"cannot widen {self.describe(r)}: {pin[1]} pins them. Pass "
                        "on_unsupported='keep' to leave them at their width."
                    )
                self.kept.append(Kept(sorted(self.S.producers[r]), self.S.size[r], pin[1]))

    def _sizes(self) -> None:
        units: dict[int, int] = {}
        for lay in self.a.producer_layouts:
            counts: dict[int, int] = {}
            for s, inner in self.S.expand(lay):
                counts[s] = counts.get(s, 0) + inner
            for s, c in counts.items():
                d = self.divisor // math.gcd(self.divisor, c)
                units[s] = math.lcm(units.get(s, 1), d)
        self.new_size: dict[int, int] = {}
        for r in self._leaves():
            n = self.S.size[r]
            if not self.widenable(r) or n == 0:
                self.new_size[r] = n
                continue
            d = units.get(r, 1)
            m = max(d, int(n * self.factor / d + 0.5) * d)
            while m < n:
                m += d
            self.new_size[r] = m

    def _violates(self, h: Hazard) -> bool:
        leaves = self.S.expand(h.layout)
        ratios = {self.new_size[s] / self.S.size[s] for s, _ in leaves if self.S.size[s]}
        if ratios <= {1.0}:
            return False
        if not h.uniform_ok:
            return True
        return len(ratios) > 1 or not float(next(iter(ratios))).is_integer()

    def _hazard_message(self, h: Hazard, count: int) -> str:
        leaf = next(s for s, _ in self.S.expand(h.layout) if self.widened(s))
        more = f" ({count - 1} more such node(s))" if count > 1 else ""
        uniform = (" Only a whole-number factor duplicates every channel equally and keeps it exact."
                   if h.uniform_ok else "")
        return (
            f"widen_channels(preserve_function=True) cannot keep the output at node '{h.node}': {h.what}, "
            f"and widening {self.describe(leaf)} duplicates some of them, which changes the result.{uniform}{more} "
            "Use preserve_function=False (the widened model is trained from scratch), or "
            "on_unsupported='keep' to leave these channels at their width."
        )

    # ---- maps --------------------------------------------------------------------------------------
    def size_of(self, layout: Layout) -> int:
        return sum(self.new_size[s] * inner for s, inner in self.S.expand(layout))

    def old_size_of(self, layout: Layout) -> int:
        return sum(self.S.size[s] * inner for s, inner in self.S.expand(layout))

    def index_map(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """For each element of the widened dimension: the old element it copies, and how many copies
        that old element has (Net2WiderNet splits outgoing weights by it)."""
        src, cnt = [], []
        offset = 0
        for s, inner in self.S.expand(layout):
            n, m = self.S.size[s], self.new_size[s]
            j = torch.arange(m)
            ch = torch.where(j < n, j, (j - n) % max(n, 1))
            copies = torch.bincount(ch, minlength=n)[ch]
            t = torch.arange(inner)
            src.append((offset + ch[:, None] * inner + t[None, :]).reshape(-1))
            cnt.append(copies[:, None].expand(m, inner).reshape(-1))
            offset += n * inner
        if not src:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.cat(src), torch.cat(cnt)

    def changed(self, layout: Layout) -> bool:
        return any(self.new_size[s] != self.S.size[s] for s, _ in self.S.expand(layout))


def channel_analysis(gm: fx.GraphModule, example_inputs: Any) -> ChannelAnalysis:
    """Shape-propagate ``gm`` on ``example_inputs`` and analyse how its channel dimensions couple."""
    return ChannelAnalysis(gm, as_args(example_inputs))
