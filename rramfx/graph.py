"""Graph and module helpers shared by every pass: which layers carry crossbar weights, where the
toolkit keeps its bookkeeping on a GraphModule, and how a pass gets its own copy to edit."""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import fx, nn

from .errors import PlacementError

#: The layer types whose weights can be programmed into a crossbar (subclasses included:
#: timm's ``Conv2dSame``/``StdConv2d``, torchvision's wrappers, a user's own).
WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

# The toolkit's record lives in an attribute of the GraphModule (so pickling keeps it) that is also
# listed among torch.fx's user-preserved attributes (so deepcopy keeps it).
_RECORD_ATTR = "rramfx_record"
_FX_PRESERVED = "_user_preserved_attributes"


def is_weighted(module: nn.Module) -> bool:
    """True for convolutions and linear layers, the layers that a crossbar could hold."""
    return isinstance(module, WEIGHTED_TYPES)


def weighted_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Module path → layer for every weighted layer, in registration order (shared layers once)."""
    return {name: m for name, m in module.named_modules() if name and is_weighted(m)}


def kernel_taps(module: nn.Module) -> int:
    """Number of spatial taps of a layer's kernel: 9 for 3x3, 1 for 1x1 convolutions and linears."""
    if isinstance(module, nn.modules.conv._ConvNd):
        taps = 1
        for k in module.kernel_size:
            taps *= int(k)
        return taps
    return 1


def rramfx_meta(gm: fx.GraphModule) -> dict[str, Any]:
    """The toolkit's bookkeeping dict on a GraphModule (created empty when missing); it survives
    ``copy.deepcopy`` and ``torch.save``/``torch.load`` of the module."""
    record = gm.__dict__.get(_RECORD_ATTR)
    if record is None:
        record = {}
        gm.__dict__[_RECORD_ATTR] = record
    gm.meta.setdefault(_FX_PRESERVED, {})[_RECORD_ATTR] = record
    return record


def require_meta(gm: nn.Module, key: str, what_to_do: str) -> Any:
    """Read one bookkeeping entry, or raise a PlacementError that says which step is missing."""
    meta = rramfx_meta(gm) if isinstance(gm, fx.GraphModule) else {}
    if key not in meta:
        raise PlacementError(
            f"this model has no rramfx {key!r} record ({type(gm).__name__}); {what_to_do}"
        )
    return meta[key]


def copy_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A deep copy for a pass to edit, so that the caller's GraphModule stays as it was."""
    if not isinstance(gm, fx.GraphModule):
        raise TypeError(
            f"expected a torch.fx.GraphModule (from rramfx.trace or rramfx.prepare), got {type(gm).__name__}"
        )
    return copy.deepcopy(gm)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


# ---- helpers for the structural passes -------------------------------------------------------------

def as_args(example_inputs: Any) -> tuple:
    """``example_inputs`` as the positional-argument tuple of a forward call."""
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def shape_prop(gm: fx.GraphModule, example_inputs: Any, what: str = "this pass") -> Any:
    """Run ``gm`` once on ``example_inputs`` (eval mode, no grad) with torch.fx's ShapeProp, so every
    tensor node carries ``node.meta["tensor_meta"]``; returns the output. The training flags of every
    submodule are restored afterwards."""
    from torch.fx.passes.shape_prop import ShapeProp

    from .errors import PassError

    flags = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            return ShapeProp(gm).propagate(*as_args(example_inputs))
    except Exception as e:
        raise PassError(
            f"{what} could not run the model on the example inputs to read tensor shapes "
            f"({type(e).__name__}: {e}). Pass example_inputs that the model accepts."
        ) from e
    finally:
        for m, flag in flags:
            m.training = flag


def tensor_meta(node: fx.Node) -> Any:
    """ShapeProp's TensorMetadata of a node (None when the node is not a tensor or was not propagated)."""
    meta = node.meta.get("tensor_meta")
    return meta if meta is not None and hasattr(meta, "shape") else None


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` inside ``root`` (the parent must exist)."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def is_conv(module: nn.Module) -> bool:
    """True for forward (not transposed) convolutions of any dimension and their subclasses."""
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed


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


# ---- weight-standardised convolutions (timm's StdConv2d / ScaledStdConv2d) -------------------------

def standardisation(module: nn.Module) -> str | None:
    """``"std"`` for timm's StdConv2d, ``"scaled"`` for ScaledStdConv2d (weight standardised over each
    output row, times a learned gain), None for an ordinary layer. A pass that rewrites weights must
    treat the two kinds specially: zeros or split columns change a row's mean and variance."""
    names = {c.__name__ for c in type(module).__mro__ if c.__module__.startswith("timm.")}
    if names & {"ScaledStdConv2d", "ScaledStdConv2dSame"}:
        return "scaled"
    if names & {"StdConv2d", "StdConv2dSame"}:
        return "std"
    return None


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight a (possibly weight-standardised) convolution really computes with."""
    kind = standardisation(module)
    w = module.weight
    if kind is None:
        return w
    scale = (module.gain * module.scale).view(-1) if kind == "scaled" else None
    return torch.nn.functional.batch_norm(
        w.reshape(1, w.shape[0], -1), None, None, weight=scale, training=True, momentum=0.0, eps=module.eps
    ).reshape_as(w)


def set_scaled_std_weight(module: nn.Module, target: torch.Tensor) -> None:
    """Make a ScaledStdConv2d compute with exactly ``target`` (whose rows must have zero mean):
    the raw weight becomes ``target`` and the per-row gain absorbs the standardisation, which is
    exact because standardising a zero-mean row only divides it by its standard deviation."""
    rows = target.reshape(target.shape[0], -1)
    fan_in = rows.shape[1]
    module.scale = module.scale * (module.weight[0].numel() / fan_in) ** 0.5  # gamma / sqrt(fan_in)
    var = rows.var(dim=1, unbiased=False)
    gain = torch.sqrt(var + module.eps) / module.scale
    module.weight = nn.Parameter(target.detach().clone(), requires_grad=module.weight.requires_grad)
    module.gain = nn.Parameter(gain.view(-1, 1, 1, 1).to(module.gain.dtype), requires_grad=module.gain.requires_grad)
