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

Each kind of operation has one rule (`rramfx.channels.registry`): placeholder/output/get_attr and
module calls (`nodes`), layers by module class (`layers`, `norms`), elementwise operations
(`pointwise`), indexing and concatenation (`indexing`), reshapes (`reshape`), pooling, padding,
reductions and softmax (`functional`). `rules.DEFAULT_RULES` registers them all; `ChannelAnalysis`
looks up each node's rule and calls it.
"""
from rramfx.channels.analysis import ChannelAnalysis
from rramfx.channels.plan import WideningPlan
from rramfx.channels.registry import ModuleRule, Rule, RuleSet
from rramfx.channels.rules import DEFAULT_RULES, default_rules
from rramfx.channels.spaces import Layout

__all__ = ["DEFAULT_RULES", "ChannelAnalysis", "Layout", "ModuleRule", "Rule", "RuleSet", "WideningPlan",
           "default_rules"]
