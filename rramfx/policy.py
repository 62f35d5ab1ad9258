"""`Policy`: one validated, immutable description of how a model is prepared for an RRAM chip.

A policy says which layers go to the crossbar (the kernel-size rule plus ordered overrides), the
DropConnect rate used in training, the fault rate expected at deployment, and which structural passes
change the network first (linear bottlenecks, padded 1x1 convolutions, wider channels). It round-trips
through plain dicts, JSON and TOML so that an experiment's preparation can be stored beside its results.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rramfx.checks import unit_rate, writable_file
from rramfx.errors import ArgumentError, PolicyError, PolicyFileError
from rramfx.files import read_settings_file, write_atomic

__all__ = ["DEVICES", "MAX_DIVISOR", "MAX_EXPAND_RATIO", "MAX_WIDEN", "Policy"]

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

DEVICES = ("rram", "cpu")
MAX_WIDEN = 16.0
MAX_DIVISOR = 1024
MAX_EXPAND_RATIO = 64.0


@dataclass(frozen=True)
class Policy:
    """How to prepare a model for a fault-prone RRAM crossbar accelerator.

    Placement: convolutions whose kernel has more than one tap go to ``conv_kxk`` (RRAM), 1x1
    convolutions to ``conv_1x1`` (CPU: cheap on a host, and the most fault-critical layers) and
    linear layers to ``linear`` (CPU). ``overrides`` then maps module-path glob patterns
    (``fnmatch``, e.g. ``"layer4.*"``) to ``"rram"``/``"cpu"``, applied in order, later ones winning.

    ``drop_rate`` is the DropConnect rate p of RRAM layers in training, ``fault_rate`` the stuck-at
    rate p' expected on the chip; faulty inference scales RRAM weights by 1/(1-p').

    ``train_faults``: instead of DropConnect, every training step reads each RRAM layer's weight
    through a fault pattern drawn afresh (`rramfx.crossbar.trainfaults`): an `rramfx.CellFaults` or its
    ``to_dict()`` form (``{"pattern": {"kind": "lines", "wordline": 0.02}, "hardware": {"encoding":
    "bit_sliced"}}``; ``kind`` and ``hardware`` may be left out). Kept as that plain dict, checked in
    full when the model is prepared. Independent SA1 at rate p on single cells is DropConnect at p, bit
    for bit. Give ``drop_rate`` or ``train_faults``, not both.

    Structural passes, run by `rramfx.prepare` before placement in the order bottleneck → pad → widen
    (all off by default):

    - ``bottleneck``: convolutions to replace with MobileNetV2 linear bottlenecks, as module paths or
      1-based indices over the k×k convolutions in execution order; ``bottleneck_expand_ratio`` is
      the expansion t (hidden width t·C_in), in (0, 64].
    - ``pad_1x1``: which 1x1 convolutions become equivalent 3x3 ones (and so RRAM layers): ``"all"``,
      ``"shortcut"``, module-path globs, or a list of them; empty for none.
    - ``widen``: channel multiplier in [1, 16] (1 = unchanged; the paper's 1.2 / 1.6);
      ``widen_preserve_function`` keeps the network's function (Net2WiderNet) instead of
      re-initialising; ``widen_divisor`` rounds channel counts to multiples of it, in [1, 1024].
    """

    drop_rate: float = 0.0
    fault_rate: float = 0.0
    conv_kxk: str = "rram"
    conv_1x1: str = "cpu"
    linear: str = "cpu"
    overrides: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    bottleneck: tuple[int | str, ...] = field(default_factory=tuple)
    bottleneck_expand_ratio: float = 6.0
    pad_1x1: tuple[str, ...] = field(default_factory=tuple)
    widen: float = 1.0
    widen_preserve_function: bool = False
    widen_divisor: int = 1
    train_faults: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for name in ("drop_rate", "fault_rate"):
            object.__setattr__(self, name, unit_rate(f"Policy.{name}", getattr(self, name), PolicyError))
        for name in ("conv_kxk", "conv_1x1", "linear"):
            _device(name, getattr(self, name))
        object.__setattr__(self, "overrides", _normalise_overrides(self.overrides))
        object.__setattr__(self, "bottleneck", _normalise_targets(self.bottleneck))
        object.__setattr__(self, "bottleneck_expand_ratio",
                           _number("bottleneck_expand_ratio", self.bottleneck_expand_ratio, 0.0, MAX_EXPAND_RATIO,
                                   "(0, 64]", open_low=True))
        object.__setattr__(self, "pad_1x1", _normalise_pad(self.pad_1x1))
        object.__setattr__(self, "widen", _number("widen", self.widen, 1.0, MAX_WIDEN, "[1, 16]"))
        if not isinstance(self.widen_preserve_function, bool):
            raise PolicyError(
                f"Policy.widen_preserve_function must be true or false, got {self.widen_preserve_function!r}")
        d = self.widen_divisor
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DIVISOR:
            raise PolicyError(f"Policy.widen_divisor must be an integer in [1, {MAX_DIVISOR}], got {d!r}")
        object.__setattr__(self, "train_faults", _normalise_train_faults(self.train_faults))
        if self.train_faults is not None and self.drop_rate > 0:
            raise PolicyError("Policy.train_faults replaces DropConnect in training: give drop_rate or "
                              "train_faults, not both (DropConnect at p is train_faults "
                              "{'pattern': {'kind': 'independent', 'sa1': p}})")

    @property
    def structural(self) -> bool:
        """True when the policy asks for any structural pass."""
        return bool(self.bottleneck or self.pad_1x1 or self.widen != 1.0)

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/TOML ready); ``Policy.from_dict(p.to_dict()) == p``."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["overrides"] = dict(self.overrides)
        d["bottleneck"] = list(self.bottleneck)
        d["pad_1x1"] = list(self.pad_1x1)
        d["train_faults"] = None if self.train_faults is None else json.loads(json.dumps(self.train_faults))
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Build a policy from plain data, rejecting unknown keys with the closest known names."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"a policy must be a mapping of field names to values, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = "; ".join(
                f"'{k}' (did you mean {difflib.get_close_matches(str(k), known, n=1)[0]!r}?)"
                if difflib.get_close_matches(str(k), known, n=1) else f"'{k}'"
                for k in unknown
            )
            raise PolicyError(f"unknown policy field(s): {hints}. Known fields: {', '.join(known)}")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load a policy from a ``.json`` or ``.toml`` file."""
        data = read_settings_file(path, "policy file", PolicyFileError)
        try:
            return cls.from_dict(data)
        except ArgumentError as e:
            raise PolicyFileError(f"policy file '{path}': {e}") from e

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON or TOML, chosen by the file's suffix."""
        path = writable_file("Policy.save path", path)
        text = json.dumps(self.to_dict(), indent=2) + "\n" if _file_kind(path) == "json" else self._toml()
        return write_atomic(path, text)

    def _toml(self) -> str:
        lines = []
        for key, value in self.to_dict().items():
            if key != "overrides" and value is not None:  # TOML has no null: a missing key is the default
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[overrides]  # module-path glob -> device, applied in order")
        lines += [f"{_toml_value(pattern)} = {_toml_value(device)}" for pattern, device in self.overrides]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML literal for a string, number, boolean or array of them (JSON's escapes are not all valid
    TOML: surrogate pairs)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if not isinstance(value, str):
        return json.dumps(value)
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise PolicyFileError(f"policy file '{path}' must end in .json or .toml (got '{suffix or 'no suffix'}')")
    return suffix[1:]


def _device(name: str, value: Any) -> str:
    if value not in DEVICES:
        raise PolicyError(f"Policy.{name} must be one of {DEVICES}, got {value!r}")
    return value


def _number(name: str, value: Any, low: float, high: float, bounds: str, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PolicyError(f"Policy.{name} must be a number in {bounds}, got {value!r}")
    if not ((low < value if open_low else low <= value) and value <= high):
        raise PolicyError(f"Policy.{name} must be in {bounds}, got {value}")
    return float(value)


def _normalise_targets(value: Any) -> tuple[int | str, ...]:
    items = (value,) if isinstance(value, (str, int)) else value
    try:
        items = tuple(items)
    except TypeError:
        raise PolicyError(
            f"Policy.bottleneck must be a list of module paths or 1-based convolution indices, got {value!r}"
        ) from None
    for t in items:
        if isinstance(t, bool) or not ((isinstance(t, int) and t >= 1) or (isinstance(t, str) and t)):
            raise PolicyError(
                f"Policy.bottleneck entries must be module paths or indices >= 1, got {t!r}"
            )
    if len(set(items)) != len(items):
        raise PolicyError(f"Policy.bottleneck lists a target twice: {list(items)!r}")
    return items


def _normalise_pad(value: Any) -> tuple[str, ...]:
    if value == "":
        return ()
    items = (value,) if isinstance(value, str) else value
    try:
        items = tuple(items)
    except TypeError:
        raise PolicyError(
            f"Policy.pad_1x1 must be 'all', 'shortcut', a module-path glob or a list of them, got {value!r}"
        ) from None
    for s in items:
        if not isinstance(s, str) or not s:
            raise PolicyError(
                f"Policy.pad_1x1 entries must be 'all', 'shortcut' or non-empty module-path globs, got {s!r}"
            )
    return items


def _normalise_train_faults(value: Any) -> dict[str, Any] | None:
    """None, or the spec as plain JSON data (a fault model object by its ``to_dict()``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) and callable(getattr(value, "to_dict", None)):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise PolicyError(f"Policy.train_faults must be an rramfx.CellFaults or a dict like "
                          f"{{'pattern': {{'kind': 'lines', 'wordline': 0.02}}}}, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise PolicyError(f"Policy.train_faults must hold plain data (numbers, strings, lists, dicts): {e}") from None


def _normalise_overrides(value: Any) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [tuple(item) for item in items]
    except TypeError:
        raise PolicyError(
            f"Policy.overrides must map module-path patterns to 'rram'/'cpu', got {value!r}"
        ) from None
    out = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            raise PolicyError(f"Policy.overrides entries must be (pattern, device) pairs, got {pair!r}")
        out.append((pair[0], _device(f"overrides[{pair[0]!r}]", pair[1])))
    return tuple(out)
