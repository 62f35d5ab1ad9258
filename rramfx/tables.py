"""Plain-text and markdown tables: the one renderer behind every table the toolkit prints.

The placement summary, the sensitivity and placement-search reports, the sweep's ``results.md`` and
the cost tables all lay out rows of already formatted cells; `table_lines` does the layout once, so
the tables look alike and a change of style is made in one place. It sits in the lowest layer (it
imports only `rramfx.errors`) so that every unit may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rramfx.errors import ArgumentError

__all__ = ["table_lines"]


def table_lines(header: Sequence[Any], rows: Sequence[Sequence[Any]], aligns: str, *, markdown: bool = False,
                pad: bool = True) -> list[str]:
    """``header`` and ``rows`` (cells of any type, shown with ``str``) as the lines of a table.

    ``aligns`` has one ``<`` (left) or ``>`` (right) per column. Text (the default): columns padded to
    their widest cell and separated by two spaces, a rule of dashes under the header, trailing spaces
    stripped. ``markdown``: a pipe table whose rule marks right-aligned columns with ``:``; with
    ``pad=False`` its cells are not padded (``| a | b |`` over ``|---|---:|``), as a file meant for a
    markdown viewer rather than a terminal wants.
    """
    if len(aligns) != len(header) or set(aligns) - {"<", ">"}:
        raise ArgumentError(f"aligns needs one '<' or '>' per column ({len(header)}), got {aligns!r}")
    cells = [[str(v) for v in header], *[[str(v) for v in row] for row in rows]]
    if markdown and not pad:
        lines = ["| " + " | ".join(row) + " |" for row in cells]
        return [lines[0], "|" + "|".join("---:" if a == ">" else "---" for a in aligns) + "|", *lines[1:]]
    widths = [max(3 if markdown else 1, *(len(row[i]) for row in cells)) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        parts = [f"{v:{a}{w}}" for v, a, w in zip(row, aligns, widths, strict=True)]
        return "| " + " | ".join(parts) + " |" if markdown else "  ".join(parts).rstrip()

    if markdown:
        rule_cells = ["-" * (w - 1) + ":" if a == ">" else "-" * w for a, w in zip(aligns, widths, strict=True)]
    else:
        rule_cells = ["-" * w for w in widths]
    return [fmt(cells[0]), fmt(rule_cells), *map(fmt, cells[1:])]
