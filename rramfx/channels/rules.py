"""The default channel rules: every rule of the analysis, registered by the operation it covers."""

from __future__ import annotations

from rramfx.channels.functional import FUNCTIONAL_RULES
from rramfx.channels.indexing import INDEX_RULES
from rramfx.channels.layers import LAYER_RULES, leaf_chain
from rramfx.channels.mixing import MIXING_RULES
from rramfx.channels.nodes import NODE_RULES, unknown
from rramfx.channels.norms import NORM_RULES
from rramfx.channels.pointwise import POINTWISE_RULES
from rramfx.channels.registry import RuleSet
from rramfx.channels.reshape import RESHAPE_RULES

__all__ = ["DEFAULT_RULES", "default_rules"]


def default_rules() -> RuleSet:
    """A fresh `RuleSet` of the built-in rules (add or replace rules on it without touching the default)."""
    return RuleSet(
        (*NODE_RULES, *LAYER_RULES, *NORM_RULES, *POINTWISE_RULES, *INDEX_RULES, *RESHAPE_RULES,
         *FUNCTIONAL_RULES, *MIXING_RULES),
        fallback=unknown,
        module_fallback=leaf_chain,
    )


#: The rules `ChannelAnalysis` uses unless it is given others.
DEFAULT_RULES = default_rules()
