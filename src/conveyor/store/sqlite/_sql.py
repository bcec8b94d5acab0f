"""The small SQL-building helpers of the SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

from .._rules import StatusRange

ROWS_PER_STATEMENT: Final = 256  # keeps VALUES lists well under SQLite's parameter limit
LEASED: Final = "INDEXED BY jobs_leased"  # a leased range's index (see status_ranges)


def jobs_table(statuses: StatusRange) -> str:
    """The jobs table, as a query reading ``statuses`` names it (see status_ranges)."""
    return f"jobs {LEASED}" if statuses.leased else "jobs"


def values_list(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def chunks(items: Sequence[Any], size: int = ROWS_PER_STATEMENT) -> Iterable[Sequence[Any]]:
    """``items`` in chunks of ``size``, and the rest in chunks whose lengths are powers
    of two, largest first (37 rows: 32, 4, 1).

    Each length is another SQL text, and every text is a prepared statement that each
    connection caches (``cached_statements``). A batch of any length from 1 to 256 once
    meant up to 256 texts per statement: caches that kept filling for an hour, each fill
    a prepare, and evictions that fragmented the heap. Powers of two make it nine texts
    per statement, prepared once, for at most one statement per bit of the length.
    """
    start, left = 0, len(items)
    while left:
        step = size if left >= size else 1 << (left.bit_length() - 1)
        yield items[start : start + step]
        start += step
        left -= step


def statements(script: str) -> Iterable[str]:
    """Split a script into statements (executescript() would commit our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer!r}")
