"""The SQLite store's history appender: every write that changes a job's status appends
its rows through it, in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..._states import JobStatus
from .._records import Transition
from ._sql import chunks, values_list

HistoryRow = tuple[str, str, JobStatus, float, str | None]  # job_id, queue, status, at, message


def append_history(
    conn: sqlite3.Connection, rows: Sequence[HistoryRow], origin: str
) -> list[Transition]:
    """Append history rows, marked with the writer's ``origin``; one round trip per
    chunk. Under the write lock AUTOINCREMENT hands out consecutive seqs in insertion
    order, so sorting the returned seqs pairs them with the rows."""
    transitions: list[Transition] = []
    for chunk in chunks(rows):
        params: list[Any] = []
        for job_id, queue, status, at, message in chunk:
            params += (job_id, queue, status.value, at, message, origin)
        returned = conn.execute(
            "INSERT INTO job_history (job_id, queue, status, at, message, origin)"
            f" VALUES {values_list(6, len(chunk))} RETURNING seq",
            params,
        ).fetchall()
        seqs = sorted(row[0] for row in returned)
        transitions += [
            Transition(seq=seq, job_id=r[0], queue=r[1], status=r[2], at=r[3], message=r[4])
            for seq, r in zip(seqs, chunk, strict=True)
        ]
    return transitions
