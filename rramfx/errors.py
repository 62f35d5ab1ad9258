"""The toolkit's exception types.

Every error a user can trigger is one of these, raised early and naming the layer, field or file at
fault together with what to do about it, so that nobody has to read a stack trace from inside torch.
"""

from __future__ import annotations

__all__ = [
    "CostError",
    "FaultError",
    "PassError",
    "PlacementError",
    "PolicyError",
    "RramfxError",
    "TraceError",
]


class RramfxError(Exception):
    """Base class of every error rramfx raises on purpose."""


class PolicyError(RramfxError, ValueError):
    """A `Policy` field holds a value outside its allowed range, or a policy file is unreadable."""


class TraceError(RramfxError):
    """A model could not be turned into a torch.fx graph, even after making failing modules leaves."""


class PlacementError(RramfxError):
    """The RRAM/CPU placement cannot be computed or read (unknown override target, unprepared model)."""


class FaultError(RramfxError, ValueError):
    """A fault model, fault set or fault file does not fit the model it is applied to."""


class PassError(RramfxError):
    """A graph pass cannot do what it was asked on this model (the message names the node or module)."""


class CostError(RramfxError, ValueError):
    """A cost estimate cannot be made: the model is not a prepared one, its example inputs do not run,
    or a `rramfx.cost.Hardware` field is out of range (the message names the field)."""
