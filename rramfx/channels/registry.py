"""The registry of channel rules: one small rule per kind of operation, found by what a node calls.

A *rule* states how one operation couples the channel layouts of its inputs and its output. It is
registered under the keys that identify the operation in a torch.fx graph (a node op such as
``placeholder``, a ``call_function`` target, a ``call_method`` name, or, for ``call_module`` nodes, a
module class) and declares its contract:

- ``reads``: what it takes from the node's arguments, each a typed `Read` (a tensor the analysis
  follows, a list of them, a Python constant, a dimension index, the output shape). The registry
  resolves them before the rule runs, so a rule never digs in ``node.args``; a read that does not
  hold (a tensor the analysis cannot follow, a size computed at run time) makes the node a barrier
  with a message that names the operation and the argument.
- ``produces``: what it returns (`TENSOR`: one tensor value, `TENSORS`: a tuple of them, `VALUE`:
  whatever the node returns, `NOTHING`).
- ``records``: what else it may add to the analysis (`LAYER` uses, `HAZARD`\\s, graph `REWRITE`\\s
  of the named kinds, `PARAM` layouts); the registry checks this after every call.

Module rules (`ModuleRule`) all read the same things, the module, its path, its input tensor and its
output shape, so that a rule may apply the rule of a module it finds inside a leaf module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import fx, nn

from rramfx.channels.values import TV
from rramfx.errors import ArgumentError, ArgumentTypeError, PassError

__all__ = [
    "HAZARD",
    "LAYER",
    "NOTHING",
    "PARAM",
    "REWRITE",
    "TENSOR",
    "TENSORS",
    "VALUE",
    "ModuleRule",
    "Read",
    "Rule",
    "RuleContext",
    "RuleSet",
    "argument",
    "constant",
    "dim",
    "module_rule",
    "operands",
    "optional_tensor",
    "out_shape",
    "rule",
    "tensor",
    "tensors",
    "value",
    "varargs",
]

# what a rule returns
TENSOR, TENSORS, VALUE, NOTHING = "tensor", "tensors", "value", "nothing"
# what else a rule may record in the analysis
LAYER, HAZARD, PARAM = "layer", "hazard", "param"
REWRITE = "rewrite"  # written "rewrite:<kind>", the kinds the widening pass rewrites
_REQUIRED = object()


class RuleContext(Protocol):
    """What the registry needs from the analysis that calls it (`AnalysisState` provides it)."""

    def val(self, x: Any) -> Any: ...
    def tv(self, x: Any) -> TV | None: ...
    def out_shape(self, node: fx.Node) -> tuple[int, ...] | None: ...
    def barrier(self, node: fx.Node, what: str) -> Any: ...
    def effects(self) -> int: ...
    def effects_since(self, mark: int) -> set[str]: ...


class _Unread(Exception):
    """A declared read does not hold for this node (the node becomes a barrier)."""


@dataclass(frozen=True)
class Read:
    """One thing a rule reads from a node: the argument at ``pos`` or keyword ``keyword``.

    ``kind`` is ``tensor`` (a tensor the analysis follows, required), ``tensor?`` (one or None),
    ``operands`` (the values of all arguments), ``varargs`` (the positional arguments from ``pos`` on),
    ``raw`` (the argument as recorded, a constant or a node),
    ``tensors`` (a list or tuple of followed tensors), ``const`` (a Python constant of ``types``; a
    value computed at run time does not hold), ``dim`` (an int or tuple of ints, normalised modulo
    the rank of the read named ``of``, or of the output when ``of`` is None), ``value`` (the
    analysis's value of the argument, whatever it is) or ``shape`` (the node's output shape).
    """

    name: str
    kind: str
    pos: int | None = None
    keyword: str | None = None
    default: Any = _REQUIRED
    types: tuple[type, ...] = ()
    of: str | None = None

    def raw(self, node: fx.Node) -> Any:
        """The argument as recorded in the node (by position, then keyword, then the default)."""
        if self.pos is not None and len(node.args) > self.pos:
            return node.args[self.pos]
        key = self.keyword or self.name
        if key in node.kwargs:
            return node.kwargs[key]
        if self.default is _REQUIRED:
            raise _Unread(f"no argument '{key}'")
        return self.default

    def resolve(self, a: RuleContext, node: fx.Node, done: dict[str, Any]) -> Any:
        """The value the rule gets for this read; raises `_Unread` when it does not hold."""
        if self.kind == "shape":
            shape = a.out_shape(node)
            if shape is None and self.default is _REQUIRED:
                raise _Unread("its output is not a single tensor")
            return shape
        if self.kind == "operands":
            return [a.val(x) for x in (*node.args, *node.kwargs.values())]
        if self.kind == "varargs":
            return tuple(node.args[self.pos:])
        arg = self.raw(node)
        if self.kind == "raw":
            return arg
        if self.kind == "value":
            return a.val(arg)
        if self.kind in ("tensor", "tensor?"):
            v = a.tv(arg)
            if v is None and (self.kind == "tensor" or isinstance(arg, fx.Node)):
                raise _Unread(f"its argument '{self.name}' is not a tensor the analysis follows")
            return v
        if self.kind == "tensors":
            vs = [a.tv(t) for t in arg] if isinstance(arg, (list, tuple)) else [None]
            if any(v is None for v in vs):
                raise _Unread(f"its argument '{self.name}' holds something that is not a graph tensor")
            return vs
        if isinstance(arg, fx.Node) or (isinstance(arg, (list, tuple)) and any(isinstance(x, fx.Node) for x in arg)):
            raise _Unread(f"its argument '{self.name}' is computed at run time")
        if self.kind == "dim":
            return self._dim(arg, a, node, done)
        if self.types and not isinstance(arg, self.types):
            raise _Unread(f"its argument '{self.name}' is a {type(arg).__name__}")
        return arg

    def _dim(self, arg: Any, a: RuleContext, node: fx.Node, done: dict[str, Any]) -> Any:
        ref = done.get(self.of) if self.of else None
        ndim = len(ref.shape) if isinstance(ref, TV) else len(a.out_shape(node) or ())
        if isinstance(arg, int):
            return arg % ndim if ndim else arg
        if isinstance(arg, (list, tuple)):
            return tuple(int(v) % ndim for v in arg)
        if arg is None:
            return None
        raise _Unread(f"its argument '{self.name}' is not a dimension")


def tensor(name: str, pos: int | None = None, keyword: str | None = None) -> Read:
    """A tensor argument the analysis must follow."""
    return Read(name, "tensor", pos, keyword)


def optional_tensor(name: str, pos: int | None = None, keyword: str | None = None) -> Read:
    """A tensor argument that may be absent or None (a norm's affine parameters)."""
    return Read(name, "tensor?", pos, keyword, default=None)


def tensors(name: str, pos: int | None = None, keyword: str | None = None) -> Read:
    """A list or tuple of tensors the analysis must all follow (``cat``, ``stack``)."""
    return Read(name, "tensors", pos, keyword)


def constant(name: str, pos: int | None = None, keyword: str | None = None, default: Any = _REQUIRED,
             types: tuple[type, ...] = ()) -> Read:
    """A Python constant recorded in the graph (a size, a padding, a group count)."""
    return Read(name, "const", pos, keyword, default, types)


def dim(name: str, pos: int | None = None, keyword: str | None = None, default: Any = _REQUIRED,
        of: str | None = None) -> Read:
    """A dimension index (or tuple of them), normalised to be non-negative."""
    return Read(name, "dim", pos, keyword, default, of=of)


def argument(name: str, pos: int | None = None, keyword: str | None = None, default: Any = None) -> Read:
    """The argument as recorded in the graph, unchecked (a constant, or a node computed at run time)."""
    return Read(name, "raw", pos, keyword, default)


def value(name: str, pos: int | None = None, keyword: str | None = None) -> Read:
    """The analysis's value of an argument, unchecked (a tensor, a tuple of them, or None)."""
    return Read(name, "value", pos, keyword, default=None)


def operands(name: str = "operands") -> Read:
    """The analysis's values of every argument, positional then keyword (elementwise operations)."""
    return Read(name, "operands")


def varargs(name: str, pos: int) -> Read:
    """The positional arguments from ``pos`` on, as recorded (``permute(0, 2, 3, 1)``)."""
    return Read(name, "varargs", pos)


def out_shape(name: str = "shape", required: bool = True) -> Read:
    """The shape of the node's output (None when it is not a tensor, if not ``required``)."""
    return Read(name, "shape", default=_REQUIRED if required else None)


@dataclass(frozen=True)
class _Contract:
    name: str
    produces: str
    records: frozenset[str]

    def check(self, out: Any, effects: set[str]) -> None:
        """Raise `rramfx.PassError` if the rule returned or recorded something it did not declare."""
        if "barrier" in effects:  # a barrier's output follows the node's own output, whatever it is
            return
        if self.produces == NOTHING and out is not None:
            raise PassError(f"channel rule '{self.name}' declared to produce nothing returned {type(out).__name__}")
        if self.produces == TENSOR and out is not None and not isinstance(out, TV):
            raise PassError(f"channel rule '{self.name}' declared to produce a tensor returned {type(out).__name__}")
        if self.produces == TENSORS and out is not None and not isinstance(out, (tuple, list)):
            raise PassError(f"channel rule '{self.name}' declared to produce tensors returned {type(out).__name__}")
        undeclared = effects - self.records - {"barrier"}
        if undeclared:
            raise PassError(f"channel rule '{self.name}' recorded {sorted(undeclared)} without declaring it")


@dataclass(frozen=True)
class Rule(_Contract):
    """A channel rule for graph nodes: ``fn(analysis, node, **reads)``."""

    fn: Callable[..., Any] = field(compare=False, repr=False)
    reads: tuple[Read, ...] = ()
    ops: tuple[str, ...] = ()
    functions: tuple[Callable[..., Any], ...] = ()
    methods: tuple[str, ...] = ()

    def __call__(self, a: RuleContext, node: fx.Node) -> Any:
        done: dict[str, Any] = {}
        for r in self.reads:
            try:
                done[r.name] = r.resolve(a, node, done)
            except _Unread as e:
                return a.barrier(node, f"{self.name}: {e}")
        mark = a.effects()
        out = self.fn(a, node, **done)
        self.check(out, a.effects_since(mark))
        return out


@dataclass(frozen=True)
class ModuleRule(_Contract):
    """A channel rule for a layer module: ``fn(analysis, node, path, module, x, shape)``."""

    fn: Callable[..., Any] = field(compare=False, repr=False)
    types: tuple[type, ...] = ()
    exact: bool = False  # registered for these classes only, not their subclasses

    def apply(self, a: RuleContext, node: fx.Node, path: str, m: nn.Module, x: TV, shape: tuple[int, ...]) -> Any:
        """Run the rule on module ``m`` at ``path`` with input ``x``, checking its contract."""
        mark = a.effects()
        out = self.fn(a, node, path, m, x, shape)
        self.check(out, a.effects_since(mark))
        return out


def _check_signature(fn: Callable[..., Any], expected: list[str]) -> None:
    params = list(inspect.signature(fn).parameters)
    if params != expected:
        raise ArgumentTypeError(f"channel rule {fn.__name__} takes {params}, its declaration says {expected}")


def rule(name: str, *, reads: Iterable[Read] = (), produces: str = TENSOR, records: Iterable[str] = (),
         ops: Iterable[str] = (), functions: Iterable[Callable[..., Any]] = (),
         methods: Iterable[str] = ()) -> Callable[[Callable[..., Any]], Rule]:
    """Declare a node rule; the decorated function's parameters must be ``a, node`` and the reads."""
    reads = tuple(reads)

    def make(fn: Callable[..., Any]) -> Rule:
        _check_signature(fn, ["a", "node", *(r.name for r in reads)])
        return Rule(name, produces, frozenset(records), fn, reads, tuple(ops), tuple(functions), tuple(methods))

    return make


def module_rule(name: str, types: Iterable[type], *, exact: bool = False, produces: str = TENSOR,
                records: Iterable[str] = ()) -> Callable[[Callable[..., Any]], ModuleRule]:
    """Declare a module rule for ``types`` (and their subclasses unless ``exact``)."""

    def make(fn: Callable[..., Any]) -> ModuleRule:
        _check_signature(fn, ["a", "node", "path", "m", "x", "shape"])
        return ModuleRule(name, produces, frozenset(records), fn, tuple(types), exact)

    return make


class RuleSet:
    """Rules by key. Node rules: by node op, ``call_function`` target and ``call_method`` name, with a
    ``fallback`` for anything else. Module rules: by class, exact registrations first, then along the
    module's MRO, with a ``module_fallback``. A key may be registered once."""

    def __init__(self, rules: Iterable[Rule | ModuleRule] = (), fallback: Rule | None = None,
                 module_fallback: ModuleRule | None = None) -> None:
        self.ops: dict[str, Rule] = {}
        self.functions: dict[Callable[..., Any], Rule] = {}
        self.methods: dict[str, Rule] = {}
        self.modules: dict[type, ModuleRule] = {}
        self.exact_modules: dict[type, ModuleRule] = {}
        self.fallback = fallback
        self.module_fallback = module_fallback
        for r in rules:
            self.add(r)

    def add(self, r: Rule | ModuleRule, replace: bool = False) -> None:
        """Register ``r`` under its keys (``replace`` lets it take keys another rule holds)."""
        if isinstance(r, ModuleRule):
            table = self.exact_modules if r.exact else self.modules
            self._put(table, r.types, r, replace)
            return
        self._put(self.ops, r.ops, r, replace)
        self._put(self.functions, r.functions, r, replace)
        self._put(self.methods, r.methods, r, replace)

    @staticmethod
    def _put(table: dict[Any, Any], keys: Iterable[Any], r: Any, replace: bool) -> None:
        for k in keys:
            if k in table and not replace:
                raise ArgumentError(f"channel rules '{table[k].name}' and '{r.name}' both claim {k!r}")
            table[k] = r

    def for_node(self, node: fx.Node) -> Rule | None:
        """The rule for a node, or the fallback."""
        found = self.ops.get(node.op)
        if found is None and node.op == "call_function":
            found = self.functions.get(node.target)
        elif found is None and node.op == "call_method":
            found = self.methods.get(node.target)
        return found or self.fallback

    def for_module(self, m: nn.Module) -> ModuleRule | None:
        """The rule for a module: its exact class, else the nearest registered class of its MRO."""
        found = self.exact_modules.get(type(m))
        if found is not None:
            return found
        for cls in type(m).__mro__:
            if cls in self.modules:
                return self.modules[cls]
        return self.module_fallback

    def knows(self, m: nn.Module) -> bool:
        """True when a rule of its own (not the fallback) covers module ``m``."""
        found = self.for_module(m)
        return found is not None and found is not self.module_fallback

    def all_rules(self) -> list[Rule | ModuleRule]:
        """Every distinct rule, node rules first, in registration order."""
        seen: dict[int, Rule | ModuleRule] = {}
        for table in (self.ops, self.functions, self.methods, self.exact_modules, self.modules):
            for r in table.values():
                seen.setdefault(id(r), r)
        for r in (self.fallback, self.module_fallback):
            if r is not None:
                seen.setdefault(id(r), r)
        return list(seen.values())
