"""Count the bad inputs tried per kind: ``python -m tests.count_bad_inputs``.

Reads the module-level ``CASES: list[BadInput]`` of every ``tests/test_bad_inputs_*.py`` file (see
tests/bad_inputs.py); files without a table (hypothesis fuzzing, hand-written tests) are listed apart.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

__all__ = ["count", "main"]


def count() -> tuple[Counter[tuple[str, str]], list[str]]:
    """Cases per (kind, file) across the tabulated files, and the names of the files without a CASES
    table."""
    kinds: Counter[tuple[str, str]] = Counter()
    untabulated = []
    for path in sorted(Path(__file__).parent.glob("test_bad_inputs_*.py")):
        cases = getattr(importlib.import_module(f"tests.{path.stem}"), "CASES", None)
        if cases is None:
            untabulated.append(path.name)
            continue
        kinds.update((case.kind, path.name) for case in cases)
    return kinds, untabulated


def main() -> None:
    cases, untabulated = count()
    per_kind: Counter[str] = Counter()
    for (kind, _), n in cases.items():
        per_kind[kind] += n
    width = max((len(k) for k in per_kind), default=5)
    for kind, n in sorted(per_kind.items()):
        files = ", ".join(f"{f} {m}" for (k, f), m in sorted(cases.items()) if k == kind)
        print(f"{kind:<{width}}  {n:4d}  ({files})")
    print(f"{'total':<{width}}  {sum(per_kind.values()):4d}")
    if untabulated:
        print("no CASES table:", ", ".join(untabulated))


if __name__ == "__main__":
    main()
