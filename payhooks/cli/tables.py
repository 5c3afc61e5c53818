"""Aligned columns for a terminal, within COLUMNS (100): cells shortened or wrapped, never
past the edge unless the command was told --wide."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any, TextIO

from payhooks.cli.cli_output import COLUMNS

#: What a table fits in unless told --wide.
NARROW_COLUMNS = COLUMNS
MIN_REASON_WIDTH = 12


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:  # a word boundary not too far back; else one long word is cut
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def shorten_middle(text: str, width: int) -> str:
    """Keep both ends of an id (its provider, and the distinctive tail)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    out: TextIO,
    widths: dict[str, int] | None = None,
) -> None:
    """Aligned columns for a terminal; long cells are shortened to the given width.

    A cell of several lines (wrapped text) continues below, the other columns left blank.
    """
    widths = widths or {}

    def cell(row: dict[str, Any], column: str) -> list[str]:
        value = str(row.get(column, ""))
        limit = widths.get(column)
        return value.split("\n") if limit is None else [shorten(value, limit)]

    cells = [[cell(row, c) for c in columns] for row in rows]
    sizes = [
        max([len(c)] + [len(line) for r in cells for line in r[i]]) for i, c in enumerate(columns)
    ]
    print("  ".join(c.upper().ljust(sizes[i]) for i, c in enumerate(columns)).rstrip(), file=out)
    for r in cells:
        for n in range(max(len(lines) for lines in r)):
            line = [
                (lines[n] if n < len(lines) else "").ljust(sizes[i]) for i, lines in enumerate(r)
            ]
            print("  ".join(line).rstrip(), file=out)


def wrap(text: str, width: int) -> list[str]:
    """``text`` on lines of at most ``width``, its whitespace collapsed; one empty line if
    there is nothing to say."""
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False) or [""]


def left_for(rows: Sequence[dict[str, Any]], columns: Sequence[str], last: str) -> int:
    """What a line of NARROW_COLUMNS leaves the last column when every other is whole."""
    used = sum(max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns if c != last) + 2 * (
        len(columns) - 1
    )
    return max(NARROW_COLUMNS - used, MIN_REASON_WIDTH)
