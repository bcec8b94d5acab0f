"""The SQLite store's bulk writes: cancel or rerun every job matching a filter, a batch
per transaction (the engine repeats until a batch comes back short), each job with its
history row, as the one-job writes would."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..._states import BY_VALUE, JobStatus
from .. import _rules as rules
from .._records import JobMatch, Transition
from .._rules import SQL, sql_in, status_ranges
from ._file import SQLiteFile
from ._history import append_history
from ._sql import jobs_table


def matching(
    match: JobMatch, eligible: frozenset[JobStatus], what: str
) -> list[tuple[str, list[Any]]]:
    """``SELECT what`` of the jobs ``match`` describes (of ``eligible`` statuses only),
    one per index its statuses take (see status_ranges), each with its parameters: what
    a bulk operation takes, and what jobs_count counts."""
    tests: list[str] = []
    params: list[Any] = []
    for test, value in (
        ("queue = ?", match.queue),
        ("created_by = ?", match.created_by),
        ("created_at < ?", match.created_before),
        ("updated_at <= ?", match.as_of),
    ):
        if value is not None:
            tests.append(test)
            params.append(value)
    return [
        (f"SELECT {what} FROM {jobs_table(r)} WHERE {' AND '.join([r.where, *tests])}", params)
        for r in status_ranges(match.statuses & eligible)
    ]


def _picked(match: JobMatch, eligible: frozenset[JobStatus]) -> tuple[str, list[Any]]:
    """The ids of a batch of matching jobs, as a subquery and its parameters: the first
    ids of each index's range, and of those the first (the caller saw to it that some
    status is eligible)."""
    heads = [
        (f"{query} ORDER BY id LIMIT ?", [*params, match.limit])
        for query, params in matching(match, eligible, "id")
    ]
    if len(heads) == 1:
        return heads[0]
    union = " UNION ALL ".join(f"SELECT id FROM ({query})" for query, _ in heads)
    every = [param for _, params in heads for param in params]
    return f"SELECT id FROM ({union}) ORDER BY id LIMIT ?", [*every, match.limit]


class SQLiteBulkWrites:
    """Part of SQLiteWrites (a base class of it)."""

    file: SQLiteFile
    origin: str

    async def jobs_cancel_matching(self, match: JobMatch, now: float) -> list[Transition]:
        if not match.statuses & rules.CANCELLABLE:
            return []
        at_once = sql_in(rules.CANCEL_AT_ONCE)

        def cancel(conn: sqlite3.Connection) -> list[Transition]:
            picked, params = _picked(match, rules.CANCELLABLE)
            rows = conn.execute(
                f"UPDATE jobs SET status = CASE WHEN status IN {at_once} THEN {SQL.CANCELLED}"
                f" ELSE {SQL.CANCELLING} END, finished_at = CASE WHEN status IN {at_once}"
                f" THEN ? END, updated_at = ? WHERE id IN ({picked}) RETURNING id, queue, status",
                [now, now, *params],
            ).fetchall()
            return append_history(
                conn,
                [
                    (job_id, queue, BY_VALUE[status], now, _cancel_message(BY_VALUE[status]))
                    for job_id, queue, status in sorted(rows)
                ],
                self.origin,
            )

        return await self.file.write(cancel)

    async def jobs_rerun_matching(
        self, match: JobMatch, by: str | None, now: float
    ) -> list[Transition]:
        if not match.statuses & rules.RERUN_FROM:
            return []
        message = f"rerun by {by}" if by else "rerun"

        def rerun(conn: sqlite3.Connection) -> list[Transition]:
            picked, params = _picked(match, rules.RERUN_FROM)
            rows = conn.execute(
                f"UPDATE jobs SET status = {SQL.QUEUED}, attempts = 0, orphanings = 0,"
                " result = NULL, error = NULL, traceback = NULL, progress = NULL,"
                " started_at = NULL, scheduled_at = NULL, finished_at = NULL, updated_at = ?"
                f" WHERE id IN ({picked}) RETURNING id, queue",
                [now, *params],
            ).fetchall()
            return append_history(
                conn,
                [(job_id, queue, JobStatus.QUEUED, now, message) for job_id, queue in sorted(rows)],
                self.origin,
            )

        return await self.file.write(rerun)


def _cancel_message(status: JobStatus) -> str:
    return rules.CANCELLED_WAITING if status is JobStatus.CANCELLED else rules.CANCEL_REQUESTED
