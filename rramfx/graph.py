"""Graph and module helpers shared by every pass: which layers carry crossbar weights, where the
toolkit keeps its bookkeeping on a GraphModule, and how a pass gets its own copy to edit."""

from __future__ import annotations

import copy
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
