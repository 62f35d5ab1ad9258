"""The public API is a deliberate edit: ``rramfx.__all__`` and the signature of every public callable
(functions, classes' constructors and public methods) must match tests/public_api.txt.

After an intended change, regenerate the snapshot and review its diff:

    python -m tests.test_public_api > tests/public_api.txt
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import rramfx

SNAPSHOT = Path(__file__).with_name("public_api.txt")


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _describe(name: str, obj: object) -> list[str]:
    if isinstance(obj, types.ModuleType):
        return [f"{name}: module {obj.__name__}"] + [
            f"{name}.{sub}: {_kind(getattr(obj, sub))}" for sub in sorted(getattr(obj, "__all__", ()))
        ]
    if inspect.isclass(obj):
        lines = [f"{name}: class{_signature(obj)} bases={[b.__name__ for b in obj.__bases__]}"]
        for attr, member in sorted(vars(obj).items()):
            if attr.startswith("_"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                lines.append(f"{name}.{attr}: property")
            elif callable(member):
                lines.append(f"{name}.{attr}{_signature(member)}")
        return lines
    if callable(obj):
        return [f"{name}{_signature(obj)}"]
    return [f"{name}: {type(obj).__name__} = {obj!r}"]


def _kind(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return f"class{_signature(obj)}"
    if callable(obj):
        return f"function{_signature(obj)}"
    return type(obj).__name__


def api_lines() -> list[str]:
    """One line per public name of ``rramfx`` (and per public member of its classes)."""
    return [line for name in sorted(rramfx.__all__) for line in _describe(name, getattr(rramfx, name))]


def test_public_api_matches_the_snapshot():
    want = SNAPSHOT.read_text().splitlines()
    got = api_lines()
    added, removed = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    assert not added and not removed, (
        "the public API changed; if intended, regenerate tests/public_api.txt (see this file's docstring)\n"
        + "\n".join([*(f"+ {x}" for x in added), *(f"- {x}" for x in removed)])
    )


def test_every_public_name_resolves():
    missing = [n for n in rramfx.__all__ if not hasattr(rramfx, n)]
    assert not missing
    assert sorted(rramfx.__all__) == sorted(set(rramfx.__all__))


if __name__ == "__main__":
    print("\n".join(api_lines()))
