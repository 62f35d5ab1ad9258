"""The analysis driver: shape propagation, then one registered rule per node."""

from __future__ import annotations

from typing import Any

from torch import fx

from rramfx.channels.optables import describe
from rramfx.channels.registry import RuleSet
from rramfx.channels.rules import DEFAULT_RULES
from rramfx.channels.spaces import Mismatch
from rramfx.channels.state import AnalysisState
from rramfx.errors import PassError
from rramfx.graph.shapes import as_args, shape_prop

__all__ = ["ChannelAnalysis", "channel_analysis"]


class ChannelAnalysis(AnalysisState):
    """Run the coupling analysis on ``gm`` (its nodes get ShapeProp metadata from ``example_inputs``).

    Each node is handled by the rule ``rules`` registers for what it calls (see
    `rramfx.channels.registry`). The results are the `AnalysisState` fields plus ``reference`` (the
    model's output on the example inputs).
    """

    def __init__(self, gm: fx.GraphModule, example_inputs: Any, rules: RuleSet = DEFAULT_RULES) -> None:
        super().__init__(gm, rules)
        self._run_shapes(example_inputs)
        for node in gm.graph.nodes:
            try:
                self.values[node] = self._visit(node)
            except Mismatch as e:
                raise PassError(
                    f"channel coupling at node '{node.name}' ({describe(node)}) is inconsistent: {e}. "
                    "The analysis cannot match the channel layouts of its inputs and outputs; "
                    "widen this model by hand or report the pattern."
                ) from e

    def _run_shapes(self, example_inputs: Any) -> None:
        """ShapeProp, recording which layers each leaf module that hides layers calls, in order."""
        hooks = []
        for node in self.gm.graph.nodes:
            if node.op != "call_module":
                continue
            leaf = self.gm.get_submodule(node.target)
            if self.rules.knows(leaf) or not any(True for _ in leaf.parameters()):
                continue
            calls = self.leaf_calls.setdefault(node.target, [])
            for name, sub in leaf.named_modules():
                if sub is not leaf and self.rules.knows(sub):
                    hooks.append(sub.register_forward_hook(
                        lambda m, i, o, name=name, calls=calls: calls.append((name, m, i[0], o))))
        try:
            self.reference = shape_prop(self.gm, example_inputs, "widen_channels")
        finally:
            for h in hooks:
                h.remove()

    def _visit(self, node: fx.Node) -> Any:
        """The node's value: its rule's, after two checks common to every operation."""
        if node.op.startswith("call_") and node.meta.get("tensor_meta") is None:
            return None  # sizes, shapes, asserts and other non-tensor values
        if node.op in ("call_function", "call_method") and not any(
                self.val(x) is not None for x in node.all_input_nodes):
            return self.barrier(node, "creates a tensor from sizes or constants")
        found = self.rules.for_node(node)
        return found(self, node) if found is not None else self.barrier(node, "no channel rule covers it")


def channel_analysis(gm: fx.GraphModule, example_inputs: Any) -> ChannelAnalysis:
    """Shape-propagate ``gm`` on ``example_inputs`` and analyse how its channel dimensions couple."""
    return ChannelAnalysis(gm, as_args(example_inputs))
