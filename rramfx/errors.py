"""The toolkit's exception types, all of them: no other module defines one.

Every error a user can trigger is one of these, raised early and naming the argument, layer, field or
file at fault together with what to do about it, so that nobody has to read a stack trace from inside
torch. The types follow the kind of mistake, not the function that notices it:

- A value that is wrong on its own (out of range, not one of the choices, not a positive int) is an
  `ArgumentError` wherever it is checked, and an object of the wrong class (a str where a Policy or
  a FaultModel belongs) an `ArgumentTypeError`; both are ``ValueError``s, the latter also a
  ``TypeError``, so ``except ValueError`` / ``except TypeError`` keep working.
- A field of a settings object (`rramfx.Policy`, `rramfx.Hardware`, `rramfx.FaultModel`,
  `rramfx.SweepConfig`) that is wrong on its own raises that object's own type (`PolicyError`,
  `CostError`, `FaultError`, `SweepError`), each an `ArgumentError`.
- A model that rramfx did not make (not a GraphModule, or without the record `rramfx.prepare`
  writes) is a `NotPreparedError` wherever it is passed.
- A file that is missing, unreadable or not in its format is a `FileFormatError`; each kind of file
  has its own subclass that is also the type its readers raised before (`PolicyFileError` is a
  `PolicyError`, `OnnxFileError` an `OnnxError`, ...).
- A layer path that a report does not hold is an `UnknownLayerError` (a ``KeyError``).
- Anything else, a sound request that this model, file or state cannot satisfy, raises the error of
  the stage that fails: `TraceError`, `PassError`, `PlacementError`, `TrainError`, `OnnxError`,
  `ReportError`, or one of the argument-kind stage errors (`FaultError`, `SensitivityError`, ...).

Every class here is also importable from the package root, and the old homes of the stage errors
(``rramfx.onnx.meta.OnnxError``, ``rramfx.training.loop.TrainError``, ...) re-export them.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "CellsFailedError",
    "CostError",
    "DataError",
    "DataFileError",
    "FaultError",
    "FaultSetFileError",
    "FileFormatError",
    "ModelFileError",
    "ModelSpecError",
    "NotPreparedError",
    "OnnxError",
    "OnnxFileError",
    "PassError",
    "PlacementError",
    "PolicyError",
    "PolicyFileError",
    "ReportError",
    "ResultsFileError",
    "RramfxError",
    "SensitivityError",
    "SweepError",
    "TraceError",
    "TrainError",
    "UnknownLayerError",
]


class RramfxError(Exception):
    """Base class of every error rramfx raises on purpose."""


# ---- kinds of mistake shared by every stage ----------------------------------------------------------


class ArgumentError(RramfxError, ValueError):
    """An argument, or a field of a settings object, has a value that is wrong on its own: out of
    range (a rate outside [0, 1), ``trials=0``, a negative seed), not one of the choices, or not a
    number where one belongs. Raised by every function that checks one, the same type wherever the
    check is made; the message names the argument (``trials must be a positive int, got 0``)."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument is not an object of the class it must be: a str where an ``nn.Module``, a
    `rramfx.Policy`, a `rramfx.FaultModel`, a `rramfx.FaultSet`, a data loader or a pass belongs. A
    ``TypeError``, and an `ArgumentError` (so a ``ValueError``) because several of these checks
    raised ``ValueError`` subclasses before; the message names the argument."""


# ---- stages whose errors are mistakes in what they are given ----------------------------------------


class PolicyError(ArgumentError):
    """A `rramfx.Policy` field holds a value outside its allowed range or names an unknown field
    (from Python, a dict or a policy file); the message names the field (``Policy.drop_rate``)."""


class FaultError(ArgumentError):
    """A `rramfx.FaultModel` field is out of range, an unknown fault model kind is asked for, or a
    fault set does not fit the model it is applied to (codes for a layer that is not an RRAM layer,
    or of another shape); also a chip applied where none may be (`rramfx.recalibrate_bn`)."""


class CostError(ArgumentError):
    """A cost estimate cannot be made: a `rramfx.Hardware` field is out of range (the message
    names the field), the example inputs do not run, or a dict is not a `rramfx.CostReport`."""


class SweepError(ArgumentError):
    """A `rramfx.SweepConfig` field is invalid (the message names it), or the output folder holds
    results of a different sweep."""


class CellsFailedError(SweepError):
    """Some cells of a sweep failed (each was logged with its key and traceback) while the others
    finished and were saved; ``failed`` lists their keys. Re-running the sweep runs only what is missing."""

    def __init__(self, message: str, failed: list[str]):
        super().__init__(message)
        self.failed = list(failed)


class SensitivityError(ArgumentError):
    """An argument of `rramfx.sensitivity` or `rramfx.search_placement` does not fit the model or the
    other arguments: a layer pattern that matches no weighted layer, a budget outside (0, 1), or a
    sensitivity report measured differently from the search. Arguments it shares with
    `rramfx.monte_carlo` (trials, seed, fault model, fault rate) raise `ArgumentError` like there."""


class ModelSpecError(ArgumentError):
    """A model specification names no model that can be created (unknown name, module or factory),
    or a reference model is asked for with arguments it does not take."""


class DataError(ArgumentError):
    """A dataset is unknown or missing, or cannot be shaped into what the model expects; its files
    being unreadable or corrupt is a `DataFileError`, also a DataError."""


# ---- stages whose errors are failures on a sound request ---------------------------------------------


class TraceError(RramfxError):
    """A model could not be turned into a torch.fx graph, even after making failing modules leaves, or
    the traced graph does not compute what the model does."""


class PassError(RramfxError):
    """A graph pass cannot do what it was asked on this model: the target is not a layer it can
    rewrite, or the graph has an operation it cannot see through (the message names the node or
    module and what to do). Bad pass arguments on their own are `ArgumentError`s."""


class PlacementError(RramfxError):
    """The RRAM/CPU placement of a model cannot be used: it puts no layer on the crossbar where an
    RRAM layer is needed. A model without a placement at all is a `NotPreparedError`, also one of
    these."""


class TrainError(RramfxError):
    """Training cannot go on: the loss diverged, or a checkpoint or saved model does not fit this run
    or model. Bad `rramfx.train` arguments are `ArgumentError`s; an unreadable file a
    `ModelFileError`, also a TrainError."""


class OnnxError(RramfxError):
    """An ONNX export, partition or simulation cannot proceed: the model does not export, the file
    was exported for another use (fault mode, fault model), or the feed does not fit its inputs; the
    message names the file or layer and what to do. Unreadable files are `OnnxFileError`s."""


class ReportError(RramfxError):
    """A sweep's results cannot be rendered: the folder has no results yet. An unreadable results
    file is a `ResultsFileError`, also a ReportError."""


# ---- a model rramfx did not make --------------------------------------------------------------------


class NotPreparedError(ArgumentTypeError, PlacementError, CostError):
    """A model that rramfx did not make is passed where rramfx's model is needed: not a
    ``torch.fx.GraphModule`` (for instance the user's ``nn.Module`` itself), or a GraphModule without
    the rramfx record the step reads (the placement and policy `rramfx.prepare` writes). Raised, the
    same type everywhere, by `rramfx.monte_carlo`, `rramfx.sensitivity`, `rramfx.search_placement`,
    `rramfx.recalibrate_bn`, `rramfx.estimate_cost`, `rramfx.export_onnx`, `rramfx.placement`,
    `rramfx.summary`, the chip operations (`rramfx.inject_faults`, `rramfx.set_drop_rate`, ...) and
    the graph passes. Also a ``TypeError``, a `PlacementError` and a `CostError`: the types these
    checks raised before, which their callers may still catch."""


# ---- files ------------------------------------------------------------------------------------------


class FileFormatError(RramfxError, ValueError):
    """A file rramfx is asked to read is missing, unreadable, or not in the format it should be; the
    message names the file and what writes a good one. Each kind of file raises its own subclass."""


class PolicyFileError(FileFormatError, PolicyError):
    """A policy file (``.json`` or ``.toml``) is missing, has another suffix, or does not parse."""


class FaultSetFileError(FileFormatError, FaultError):
    """A fault set file (`rramfx.FaultSet.save`) is missing, unreadable, or not an rramfx fault set."""


class ModelFileError(FileFormatError, TrainError):
    """A trained-model file (`rramfx.save_prepared`, ``rramfx train --out``) or a training checkpoint
    is missing, unreadable, or not in rramfx's format."""


class OnnxFileError(FileFormatError, OnnxError):
    """An ONNX file is missing, unreadable, or has no rramfx metadata (not written by
    `rramfx.export_onnx`), or a partition folder has no readable rramfx manifest."""


class ResultsFileError(FileFormatError, ReportError, SweepError):
    """A sweep's results file is missing, not valid JSON, or not an rramfx sweep record (raised by
    `rramfx.write_report` and `rramfx.sweep` alike)."""


class DataFileError(FileFormatError, DataError):
    """A dataset's files are missing, unreadable, truncated or corrupt, or do not fit together."""


# ---- lookups ----------------------------------------------------------------------------------------


class UnknownLayerError(RramfxError, KeyError):
    """A layer path is not in a report (``CostReport[path]``, ``SensitivityReport[path]``); a
    ``KeyError``, as a mapping's lookup must raise."""
