"""`Policy`: one validated, immutable description of how a model is prepared for an RRAM chip.

A policy says which layers go to the crossbar (the kernel-size rule plus ordered overrides), the
DropConnect rate used in training and the fault rate expected at deployment. It round-trips through
plain dicts, JSON and TOML so that an experiment's preparation can be stored beside its results.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .checks import unit_rate
from .errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEVICES = ("rram", "cpu")


@dataclass(frozen=True)
class Policy:
    """How to prepare a model for a fault-prone RRAM crossbar accelerator.

    Placement: convolutions whose kernel has more than one tap go to ``conv_kxk`` (RRAM), 1x1
    convolutions to ``conv_1x1`` (CPU: cheap on a host, and the most fault-critical layers) and
    linear layers to ``linear`` (CPU). ``overrides`` then maps module-path glob patterns
    (``fnmatch``, e.g. ``"layer4.*"``) to ``"rram"``/``"cpu"``, applied in order, later ones winning.

    ``drop_rate`` is the DropConnect rate p of RRAM layers in training, ``fault_rate`` the stuck-at
    rate p' expected on the chip; faulty inference scales RRAM weights by 1/(1-p').
    """

    drop_rate: float = 0.0
    fault_rate: float = 0.0
    conv_kxk: str = "rram"
    conv_1x1: str = "cpu"
    linear: str = "cpu"
    overrides: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("drop_rate", "fault_rate"):
            object.__setattr__(self, name, unit_rate(f"Policy.{name}", getattr(self, name), PolicyError))
        for name in ("conv_kxk", "conv_1x1", "linear"):
            _device(name, getattr(self, name))
        object.__setattr__(self, "overrides", _normalise_overrides(self.overrides))

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/TOML ready); ``Policy.from_dict(p.to_dict()) == p``."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["overrides"] = dict(self.overrides)
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
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"policy file '{path}' does not exist")
        kind = _file_kind(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if kind == "json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise PolicyError(f"policy file '{path}' is not valid {kind.upper()}: {e}") from e
        try:
            return cls.from_dict(data)
        except PolicyError as e:
            raise PolicyError(f"policy file '{path}': {e}") from e

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON or TOML, chosen by the file's suffix."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) + "\n" if _file_kind(path) == "json" else self._toml()
        path.write_text(text, encoding="utf-8")
        return path

    def _toml(self) -> str:
        lines = []
        for key, value in self.to_dict().items():
            if key != "overrides":
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[overrides]  # module-path glob -> device, applied in order")
        lines += [f"{_toml_value(pattern)} = {_toml_value(device)}" for pattern, device in self.overrides]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML literal for a string or number (JSON's escapes are not all valid TOML: surrogate pairs)."""
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
        raise PolicyError(f"policy file '{path}' must end in .json or .toml (got '{suffix or 'no suffix'}')")
    return suffix[1:]


def _device(name: str, value: Any) -> str:
    if value not in DEVICES:
        raise PolicyError(f"Policy.{name} must be one of {DEVICES}, got {value!r}")
    return value


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
