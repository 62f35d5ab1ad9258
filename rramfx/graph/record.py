"""The toolkit's bookkeeping on a GraphModule (the ``rramfx_record``) and the copy a pass edits, so that
every pass leaves its input as it was."""

from __future__ import annotations

import copy
from typing import Any

from torch import fx, nn

from rramfx.errors import NotPreparedError

__all__ = ["copy_graph_module", "require_meta", "rramfx_meta"]

# The toolkit's record lives in an attribute of the GraphModule (so pickling keeps it) that is also
# listed among torch.fx's user-preserved attributes (so deepcopy keeps it).
_RECORD_ATTR = "rramfx_record"


_FX_PRESERVED = "_user_preserved_attributes"


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
    """Read one bookkeeping entry, or raise a `NotPreparedError` that says which step is missing."""
    meta = rramfx_meta(gm) if isinstance(gm, fx.GraphModule) else {}
    if key not in meta:
        raise NotPreparedError(
            f"gm ({type(gm).__name__}) has no rramfx {key!r} record; {what_to_do}"
        )
    return meta[key]


def copy_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A deep copy for a pass to edit, so that the caller's GraphModule stays as it was."""
    if not isinstance(gm, fx.GraphModule):
        raise NotPreparedError(
            f"gm must be a torch.fx.GraphModule (from rramfx.trace or rramfx.prepare), got {type(gm).__name__}"
        )
    return copy.deepcopy(gm)
