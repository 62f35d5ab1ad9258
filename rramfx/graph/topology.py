"""Graph topology the structural passes need: convolutions in execution order, residual additions and the
convolutions on their shortcut branches."""

from __future__ import annotations

import operator

import torch
from torch import fx

from rramfx.graph.modules import is_conv, is_weighted, kernel_taps
from rramfx.graph.shapes import tensor_meta

__all__ = ["conv_nodes", "is_residual_add", "shortcut_convs"]


def conv_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """call_module nodes of convolutions in execution (graph) order; a module called twice counts once."""
    seen: set[str] = set()
    out = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target not in seen and is_conv(gm.get_submodule(node.target)):
            seen.add(node.target)
            out.append(node)
    return out


_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}


def is_residual_add(node: fx.Node) -> bool:
    """An addition of two tensors computed by the graph (not a constant, parameter or scalar), with
    equal shapes where ShapeProp metadata is present."""
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("add", "add_"))
    if not is_add or len(node.args) < 2:
        return False
    a, b = node.args[0], node.args[1]
    if not all(isinstance(x, fx.Node) and x.op not in ("get_attr",) for x in (a, b)):
        return False
    ma, mb = tensor_meta(a), tensor_meta(b)
    return ma is None or mb is None or tuple(ma.shape) == tuple(mb.shape)


def _ancestors(node: fx.Node, cache: dict[fx.Node, frozenset]) -> frozenset:
    """The node and everything it depends on (memoised over the graph, iteratively)."""
    if node in cache:
        return cache[node]
    stack = [node]
    while stack:
        n = stack[-1]
        pending = [i for i in n.all_input_nodes if i not in cache]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if n not in cache:
            acc = {n}
            for i in n.all_input_nodes:
                acc |= cache[i]
            cache[n] = frozenset(acc)
    return cache[node]


def shortcut_convs(gm: fx.GraphModule) -> dict[str, str]:
    """Convolutions on the *shortcut* branch of a residual addition: module path → name of the add node.

    For every addition of two graph tensors the two branches are the nodes that only one operand
    depends on (everything before the fork is shared). The shortcut is the branch with fewer weighted
    layers, as long as it has one; on a tie, the branch made only of 1x1 layers while the other has a
    k×k one (RepVGG/MobileOne style 1x1 branches). The identity shortcut of a plain residual block
    has no layer and yields nothing.
    """
    cache: dict[fx.Node, frozenset] = {}
    found: dict[str, str] = {}

    def weighted(nodes: frozenset) -> list[fx.Node]:
        return [n for n in nodes if n.op == "call_module" and is_weighted(gm.get_submodule(n.target))]

    for node in gm.graph.nodes:
        if not is_residual_add(node):
            continue
        a, b = _ancestors(node.args[0], cache), _ancestors(node.args[1], cache)
        wa, wb = weighted(a - b), weighted(b - a)
        if not wa or not wb:
            continue  # an identity (or layer-free) shortcut: nothing to report
        if len(wa) != len(wb):
            short = wa if len(wa) < len(wb) else wb
        else:
            pointwise_a = all(kernel_taps(gm.get_submodule(n.target)) == 1 for n in wa)
            pointwise_b = all(kernel_taps(gm.get_submodule(n.target)) == 1 for n in wb)
            if pointwise_a == pointwise_b:
                continue  # two equal branches: neither is a shortcut
            short = wa if pointwise_a else wb
        for n in short:
            if is_conv(gm.get_submodule(n.target)):
                found.setdefault(n.target, node.name)
    return found
