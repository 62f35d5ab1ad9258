"""Files rramfx writes: atomically, and with a format tag, a version and a checksum it checks on load.

Every file rramfx writes for itself goes through here, so that an interrupted write never leaves a
half-written file under the final name (a temporary file beside it is renamed over it), and a file
that was truncated, bit-flipped or written by something else is refused on load with the caller's
`FileFormatError` naming the file and what is wrong, instead of loading silently.

A checked JSON file is one object::

    {"format": "rramfx.Sweep", "version": 2, "sha256": "<hex of the canonical payload>", "payload": ...}

where the checksum is over ``json.dumps(payload, sort_keys=True, separators=(",", ":"))``, so it does
not depend on the file's indentation.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rramfx.errors import FileFormatError

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

__all__ = ["canonical_json", "load_checked_json", "read_settings_file", "save_checked_json", "sha256_hex",
           "write_atomic"]


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename: readers see
    the old file or the whole new one, never a part. Creates missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as a hex string (hashlib; one name for it across the package)."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(payload: Any) -> bytes:
    """The bytes a checked file's checksum is computed over: sorted keys, no whitespace."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("utf-8")


def save_checked_json(path: str | Path, kind: str, version: int, payload: Any, *, indent: int | None = 1) -> Path:
    """Write ``payload`` (JSON-ready data) atomically as a checked file of format ``kind`` at
    ``version``."""
    record = {"format": kind, "version": version, "sha256": sha256_hex(canonical_json(payload)), "payload": payload}
    return write_atomic(path, json.dumps(record, indent=indent) + "\n")


def load_checked_json(path: str | Path, kind: str, error: type[FileFormatError] = FileFormatError,
                      *, versions: tuple[int, ...] = (1,)) -> tuple[int, Any]:
    """The ``(version, payload)`` of the checked file ``path`` of format ``kind``; raises ``error``
    naming the file when it is missing, not UTF-8 JSON, of another format or version, or when its
    checksum does not match its payload (truncated or edited)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise error(f"'{path}' does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"'{path}' cannot be read as UTF-8 text ({e})") from e
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"'{path}' is not valid JSON ({e}); it may be truncated: delete it and write it again") from e
    if not isinstance(record, dict) or record.get("format") != kind:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise error(f"'{path}' is not an {kind} file (format {found!r})")
    version = record.get("version")
    if version not in versions:
        raise error(f"'{path}' is {kind} version {version!r}; this rramfx reads versions {list(versions)}")
    if "payload" not in record or record.get("sha256") != sha256_hex(canonical_json(record["payload"])):
        raise error(f"'{path}' fails its checksum: the file was changed or damaged after rramfx wrote it; "
                    "delete it and write it again")
    return version, record["payload"]


def read_settings_file(path: str | Path, what: str, error: type[FileFormatError] = FileFormatError) -> dict[str, Any]:
    """The table of a ``.toml`` or ``.json`` settings file (``what`` names it in errors: a flag, a
    setting); ``error`` when it is missing, not UTF-8, of another suffix, does not parse, or is not a
    table."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("toml", "json"):
        raise error(f"{what}: '{path}' must be a .toml or .json file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise error(f"{what}: '{path}' does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{what}: '{path}' cannot be read as UTF-8 text ({e})") from e
    try:
        data = json.loads(text) if kind == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise error(f"{what}: '{path}' is not valid {kind.upper()}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{what}: '{path}' must hold a table of settings, not a {type(data).__name__}")
    return data
