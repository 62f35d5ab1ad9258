"""Argument checks shared by the public API, so every rate and count is validated the same way.

A bad value raises `ArgumentError` naming the argument. Settings objects checking their own fields
pass their own subclass of it (``Policy`` fields raise `PolicyError`, ``Hardware`` fields `CostError`),
so a bad rate is an `ArgumentError` wherever it is checked.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from rramfx.errors import ArgumentError, ArgumentTypeError

__all__ = ["class_list", "int_in", "one_of", "positive_int", "positive_number", "seed_int", "string_list",
           "trials_and_seed", "unit_rate", "writable_file", "writable_folder"]


def unit_rate(name: str, value: Any, error: type[ArgumentError] = ArgumentError, *, allow_one: bool = False) -> float:
    """``value`` as a float in [0, 1) (or [0, 1] with ``allow_one``), else ``error`` naming ``name``."""
    bounds = "[0, 1]" if allow_one else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise error(f"{name} must be a number in {bounds}, got {value!r}")
    if not (0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0):
        raise error(f"{name} must be in {bounds}, got {value}")
    return float(value)


def positive_number(name: str, value: Any, error: type[ArgumentError] = ArgumentError) -> float:
    """``value`` as a finite float > 0, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise error(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, error: type[ArgumentError] = ArgumentError) -> int:
    """``value`` as an int >= 1, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{name} must be an int >= 1, got {value!r}")
    return value


def seed_int(seed: Any) -> int:
    """``seed`` as an int >= 0 (a chip's or a run's seed), else `ArgumentError` naming ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def trials_and_seed(trials: Any, seed: Any) -> tuple[int, int]:
    """The number of chips (an int >= 1) and the seed of a Monte-Carlo run, checked the same way by the
    PyTorch and the onnxruntime evaluations; else `ArgumentError` naming the bad one."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ArgumentError(f"trials must be a positive int, got {trials!r}")
    return trials, seed_int(seed)


def int_in(name: str, value: Any, low: int, high: int, error: type[ArgumentError] = ArgumentError) -> int:
    """``value`` as an int in [low, high], else ``error`` naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise error(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return value


def one_of(name: str, value: Any, choices: Collection[Any], error: type[ArgumentError] = ArgumentError) -> Any:
    """``value`` when it is one of ``choices``, else ``error`` naming ``name`` and the choices."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def string_list(name: str, value: Any, error: type[ArgumentError] = ArgumentError, *,
                allow_int: bool = False) -> tuple[Any, ...]:
    """``value`` as a tuple of non-empty strings (and ints >= 1 with ``allow_int``). A bare string or int
    is refused rather than read letter by letter or wrapped silently: pass ``["conv1"]``."""
    kinds = "module paths or 1-based indices" if allow_int else "strings"
    if isinstance(value, (str, bytes, int)) or not isinstance(value, (list, tuple)):
        raise error(f"{name} must be a list of {kinds}, got {type(value).__name__} {value!r}"
                    + (f"; write [{value!r}] for one" if isinstance(value, (str, int)) else ""))
    for item in value:
        ok = (isinstance(item, str) and item) or (allow_int and isinstance(item, int)
                                                  and not isinstance(item, bool) and item >= 1)
        if not ok:
            raise error(f"{name} entries must be non-empty {kinds}, got {item!r}")
    return tuple(value)


def class_list(name: str, value: Any, base: type) -> tuple[type, ...]:
    """``value`` as a tuple of subclasses of ``base`` (``leaf_modules=[nn.LSTM]``); anything else, an
    instance or a number among them, raises `ArgumentTypeError` naming ``name`` and the entry."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a list of {base.__name__} classes, got {value!r}")
    items = tuple(value)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, base)):
            raise ArgumentTypeError(f"{name} entries must be {base.__name__} subclasses (the class, not an "
                                    f"instance), got {item!r}")
    return items


def _existing_ancestor(name: str, path: Path, error: type[ArgumentError]) -> Path:
    """The nearest folder above (or at) ``path`` that exists; a file on the way is ``error``."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise error(f"{name} '{path}' cannot be created: '{parent}' is a file, not a folder; "
                            "choose another path")
            return parent
    return Path.cwd()  # pragma: no cover - a relative path whose parents do not exist


def _probe(name: str, path: Path, folder: Path, error: type[ArgumentError]) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise error(f"{name} '{path}' is not writable: cannot create files in '{folder}' ({e.strerror}); "
                    "choose a folder you can write to") from None


def writable_file(name: str, path: Any, error: type[ArgumentError] = ArgumentError) -> Path:
    """``path`` as a Path where a file can be written, checked before long work starts: not a folder, no
    file among its parents, and its nearest existing folder writable; else ``error`` naming ``name``."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArgumentTypeError(f"{name} must be a file path, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise error(f"{name} '{path}' is a folder; give a file name inside it")
    if path.parent.exists() and not path.parent.is_dir():
        raise error(f"{name} '{path}' cannot be created: '{path.parent}' is a file, not a folder")
    _probe(name, path, _existing_ancestor(name, path.parent, error), error)
    return path


def writable_folder(name: str, path: Any, error: type[ArgumentError] = ArgumentError) -> Path:
    """``path`` as a Path of a folder that exists or can be created and written into, checked before
    long work starts (a sweep's or a partition's output); else ``error`` naming ``name``."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArgumentTypeError(f"{name} must be a folder path, got {path!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{name} '{path}' is a file, not a folder; choose another path")
    _probe(name, path, _existing_ancestor(name, path, error), error)
    return path
