"""Files rramfx writes: atomically, and with a format tag, a version and a checksum it checks on load.

Every file rramfx writes for itself goes through here, so that an interrupted write never leaves a
half-written file under the final name (a temporary file beside it is renamed over it), and a file
that was truncated, bit-flipped or written by something else is refused on load with the caller's
`FileFormatError` naming the file and what is wrong, instead of loading silently.

A checked JSON file is one object::

    {"format": "rramfx.Sweep", "version": 2, "sha256": "<hex of the canonical payload>", "payload": ...}

where the checksum is over ``json.dumps(payload, sort_keys=True, separators=(",", ":"))``, so it does
not depend on the file's indentation.

A checked torch file (models, checkpoints, fault sets) is a ``torch.save`` of one dict::

    {"format": "rramfx.FaultSet", "version": 2, "sha256": "<hex of payload>", "payload": <bytes>}

where ``payload`` is the ``torch.save`` of the content: the outer dict loads with ``weights_only=True``,
the checksum covers every byte of the content, and the content is unpickled only once it matches.
Files written before the checksum (a plain dict tagged ``"<format>/1"``) still load, as version 1.
"""

from __future__ import annotations

import hashlib
import io
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

__all__ = ["canonical_json", "load_checked_json", "load_checked_torch", "read_settings_file", "read_text",
           "save_checked_json", "save_checked_torch", "sha256_hex", "write_atomic"]


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


def read_text(path: str | Path, error: type[FileFormatError] = FileFormatError, prefix: str = "") -> str:
    """The UTF-8 text of ``path``; ``error`` (its message starting with ``prefix``) naming the file when
    it is missing or is not UTF-8 text."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise error(f"{prefix}'{path}' does not exist") from e
    except UnicodeDecodeError as e:
        raise error(f"{prefix}'{path}' is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise error(f"{prefix}'{path}' cannot be read ({e})") from e


def load_checked_json(path: str | Path, kind: str, error: type[FileFormatError] = FileFormatError,
                      *, versions: tuple[int, ...] = (1,)) -> tuple[int, Any]:
    """The ``(version, payload)`` of the checked file ``path`` of format ``kind``; raises ``error``
    naming the file when it is missing, not UTF-8 JSON, of another format or version, or when its
    checksum does not match its payload (truncated or edited)."""
    path = Path(path)
    text = read_text(path, error)
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
    """The table of a ``.toml`` or ``.json`` settings file (``what`` names it in errors, e.g. "policy
    file"); ``error`` when it is missing, not UTF-8, of another suffix, does not parse, or is not a
    table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise error(f"{what} '{path}' must end in .json or .toml (got '{suffix or 'no suffix'}')")
    text = read_text(path, error, f"{what} ")
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise error(f"{what} '{path}' is not valid {suffix[1:].upper()}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{what} '{path}' must hold one table of settings, got {type(data).__name__}")
    return data


def save_checked_torch(path: str | Path, kind: str, version: int, payload: Any) -> Path:
    """Write ``payload`` (tensors and plain data, loadable with ``weights_only=True``) atomically as a
    checked torch file of format ``kind`` at ``version`` (see the module docstring)."""
    import torch

    inner = io.BytesIO()
    torch.save(payload, inner)
    raw = inner.getvalue()
    outer = io.BytesIO()
    torch.save({"format": kind, "version": version, "sha256": sha256_hex(raw), "payload": raw}, outer)
    return write_atomic(path, outer.getvalue())


def load_checked_torch(path: str | Path, kind: str, error: type[FileFormatError] = FileFormatError, *,
                       versions: tuple[int, ...] = (2,), map_location: Any = "cpu") -> tuple[int, Any]:
    """The ``(version, payload)`` of the checked torch file ``path`` of format ``kind``. A file written
    before checksums (a dict tagged ``"<kind>/1"``) is returned whole as version 1. Raises ``error``
    naming the file when it is missing, not a torch file, truncated, of another format or version, or
    when its checksum does not match (changed after rramfx wrote it)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{kind} file '{path}' does not exist" if not path.exists() else f"'{path}' is not a file")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on a bad file
        raise error(f"'{path}' is not a readable {kind} file, or it is truncated ({type(e).__name__}: "
                    f"{str(e)[:200]}); write it again") from e
    found = record.get("format") if isinstance(record, dict) else type(record).__name__
    if found == f"{kind}/1":
        return 1, record
    if found != kind:
        raise error(f"'{path}' is not an {kind} file (format {found!r})")
    version = record.get("version")
    if version not in versions:
        raise error(f"'{path}' is {kind} version {version!r}; this rramfx reads versions {[1, *versions]}")
    raw = record.get("payload")
    if not isinstance(raw, bytes) or record.get("sha256") != sha256_hex(raw):
        raise error(f"'{path}' fails its checksum: the file was changed or damaged after rramfx wrote it; "
                    "delete it and write it again")
    try:
        return version, torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as e:  # pragma: no cover - a payload that matches its checksum but does not load
        raise error(f"'{path}' holds an unreadable payload ({e})") from e
