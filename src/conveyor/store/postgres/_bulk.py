"""The PostgreSQL store's bulk writes: cancel or rerun every job matching a filter, a batch
per transaction (the engine repeats until a batch comes back short), each job with its
history row, as the one-job writes would. Rows another transaction holds (a claim, an
outcome) are waited for, not skipped, so no matching job is missed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._states import JobStatus
from .. import _rules as rules
from .._records import JobMatch, Transition
from .._rules import SQL, sql_in, status_ranges
from ._history import HistoryWriter
from ._history import transitions as history_transitions


def match_where(
    match: JobMatch, eligible: frozenset[JobStatus], first: int
) -> tuple[str, list[Any]]:
    """The condition on jobs that ``match`` describes (of ``eligible`` statuses only),
    with parameters from ``$first``: what a bulk operation takes, what jobs_count counts."""
    # An OR of the ranges (see status_ranges): the planner reads each through its index.
    ranges = status_ranges(match.statuses & eligible)
    where = [f"({' OR '.join(f'({r.where})' for r in ranges)})" if ranges else "false"]
    params: list[Any] = []
    for test, value in (
        ("queue = ", match.queue),
        ("created_by = ", match.created_by),
        ("created_at < ", match.created_before),
        ("updated_at <= ", match.as_of),
    ):
        if value is not None:
            params.append(value)
            where.append(f"{test}${first + len(params) - 1}")
    return " AND ".join(where), params


def _picked(
    t: str, match: JobMatch, eligible: frozenset[JobStatus], first: int
) -> tuple[str, list[Any]]:
    """A batch of matching jobs, locked, as a subquery whose parameters start at ``$first``."""
    where, params = match_where(match, eligible, first)
    params.append(match.limit)
    query = (
        f"SELECT id FROM {t}jobs WHERE {where} ORDER BY id"
        f" LIMIT ${first + len(params) - 1} FOR UPDATE"
    )
    return query, params


class PostgresBulkWrites:
    """Part of PostgresWrites (a base class of it)."""

    history: HistoryWriter
    t: str

    async def jobs_cancel_matching(self, match: JobMatch, now: float) -> list[Transition]:
        if not match.statuses & rules.CANCELLABLE:
            return []
        at_once = f"jobs.status IN {sql_in(rules.CANCEL_AT_ONCE)}"
        picked, params = _picked(self.t, match, rules.CANCELLABLE, 4)
        return await self._change(
            f"UPDATE {self.t}jobs AS jobs SET status = CASE WHEN {at_once} THEN {SQL.CANCELLED}"
            f" ELSE {SQL.CANCELLING} END,"
            f" finished_at = CASE WHEN {at_once} THEN $1::float8 END, updated_at = $1"
            f" FROM ({picked}) AS picked WHERE jobs.id = picked.id"
            " RETURNING jobs.id AS h_job_id, jobs.queue AS h_queue, jobs.status AS h_status,"
            f" $1::float8 AS h_at, CASE WHEN jobs.status = {SQL.CANCELLED} THEN $2::text"
            " ELSE $3::text END AS h_message",
            [now, rules.CANCELLED_WAITING, rules.CANCEL_REQUESTED, *params],
        )

    async def jobs_rerun_matching(
        self, match: JobMatch, by: str | None, now: float
    ) -> list[Transition]:
        if not match.statuses & rules.RERUN_FROM:
            return []
        picked, params = _picked(self.t, match, rules.RERUN_FROM, 3)
        return await self._change(
            f"UPDATE {self.t}jobs AS jobs SET status = {SQL.QUEUED}, attempts = 0,"
            " orphanings = 0, result = NULL, error = NULL, traceback = NULL, progress = NULL,"
            " started_at = NULL, scheduled_at = NULL, finished_at = NULL, updated_at = $1"
            f" FROM ({picked}) AS picked WHERE jobs.id = picked.id"
            " RETURNING jobs.id AS h_job_id, jobs.queue AS h_queue, jobs.status AS h_status,"
            " $1::float8 AS h_at, $2::text AS h_message",
            [now, f"rerun by {by}" if by else "rerun", *params],
        )

    async def _change(self, change: str, args: Sequence[Any]) -> list[Transition]:
        rows = await self.history.change(change, args, order_by="h_job_id")
        return history_transitions(rows)
