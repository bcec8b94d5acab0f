"""The SQLite store's writes: every change to jobs, from the hot path (insert, claim,
finish, progress) to promoting due jobs and what operators ask for (cancel, rerun,
purge). Keeping leases is in _leases.py, the bulk operations in _bulk.py: base classes
of the one StoreWrites here.

Each is one transaction, a plain function of a sqlite3 connection run whole on the
connection's thread (see SQLiteFile.write); batches go in one statement per chunk of
rows (see _sql.chunks), and history rows through append_history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

from msgspec.structs import replace

from ... import _codec
from ..._errors import InvalidTransition, ValidationError
from ..._models import NO_PROGRESS, Job
from ..._states import BY_VALUE, TERMINAL, JobStatus
from .. import _rules as rules
from .._base import (
    OutcomeTransaction,
)
from .._records import (
    Claimed,
    ClaimParams,
    EarlyClaims,
    Finish,
    NewJob,
    ProgressWrite,
    PurgeParams,
    Transition,
)
from .._rows import JOB_COLUMNS, row_to_job
from .._rules import SQL
from ._bulk import SQLiteBulkWrites
from ._file import SQLiteFile
from ._history import HistoryRow, append_history
from ._leases import SQLiteLeaseWrites
from ._reads import job_row, unfinished_with_key
from ._sql import ROWS_PER_STATEMENT, chunks, values_list

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})


class SQLiteWrites(SQLiteBulkWrites, SQLiteLeaseWrites):
    """The StoreWrites of SQLiteStore, through the file's writer connections.
    ``origin`` marks the history rows (set when the store opens)."""

    one_at_a_time = True  # one write transaction at a time, through the file's lock

    def __init__(self, file: SQLiteFile) -> None:
        self.file = file
        self.origin = ""

    async def jobs_insert(
        self, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[Transition | Job]:
        if connection is not None:
            raise ValidationError(
                "connection= joins a PostgreSQL transaction of the application's: a SQLite"
                " store commits its own (enqueue without it)"
            )
        if not jobs:
            return []
        return await self.file.write(lambda conn: self._insert(conn, jobs))

    async def jobs_insert_claiming(
        self,
        jobs: Sequence[NewJob],
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition | Job], list[Claimed]]:
        def insert_and_claim(
            conn: sqlite3.Connection,
        ) -> tuple[list[Transition | Job], list[Claimed]]:
            inserted = self._insert(conn, jobs) if jobs else []
            return inserted, [self._claim(conn, params) for params in claims]

        return await self.file.write(insert_and_claim, before_commit=_claims_to(early))

    def _insert(self, conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        inserted: set[str] | None = None  # None: all of them (no unique keys)
        for chunk in chunks(jobs, ROWS_PER_STATEMENT):
            params: list[Any] = []
            for j in chunk:
                params += (
                    j.id,
                    j.queue,
                    j.status.value,
                    j.payload,
                    j.priority,
                    j.max_attempts,
                    j.created_by,
                    j.created_at,
                    j.scheduled_at,
                    j.created_at,
                    j.timeout,
                    j.unique_key,
                    _codec.encode(j.meta).decode() if j.meta else None,
                    _codec.encode(j.tags).decode() if j.tags else None,
                )
            sql = (
                "INSERT INTO jobs (id, queue, status, payload, priority, max_attempts,"
                " created_by, created_at, scheduled_at, updated_at, timeout, unique_key,"
                f" meta, tags) VALUES {values_list(14, len(chunk))}"
            )
            if any(j.unique_key is not None or j.derived_id for j in chunk):
                rows = conn.execute(f"{sql} ON CONFLICT DO NOTHING RETURNING id", params).fetchall()
                inserted = (inserted or set()) | {row[0] for row in rows}
                inserted |= {j.id for j in chunk if j.unique_key is None and not j.derived_id}
            else:
                conn.execute(sql, params)
                if inserted is not None:
                    inserted |= {j.id for j in chunk}
        new = jobs if inserted is None else [j for j in jobs if j.id in inserted]
        transitions = append_history(
            conn, [(j.id, j.queue, j.status, j.created_at, None) for j in new], self.origin
        )
        if inserted is None:
            return list(transitions)
        kept_out_by = {
            j.id: (
                unfinished_with_key(conn, j.queue, j.unique_key)
                if j.unique_key is not None
                else job_row(conn, j.id, None)
            )
            for j in jobs
            if j.id not in inserted
        }
        return rules.insert_outcomes(jobs, transitions, kept_out_by)

    async def jobs_claim(self, params: ClaimParams) -> Claimed:
        return await self.file.write(lambda conn: self._claim(conn, params), durable=False)

    def _claim(self, conn: sqlite3.Connection, params: ClaimParams) -> Claimed:
        rows = conn.execute(
            f"UPDATE jobs SET status = {SQL.RUNNING}, attempts = attempts + 1, progress = NULL,"
            " lease_owner = ?,"
            " lease_token = ?, lease_expires_at = ?, started_at = ?, updated_at = ?"
            f" WHERE id IN (SELECT id FROM jobs WHERE queue = ? AND status = {SQL.CLAIMABLE}"
            " ORDER BY priority DESC, id LIMIT ?)"
            f" RETURNING {JOB_COLUMNS}",
            (
                params.owner,
                params.token,
                params.lease_expires_at,
                params.now,
                params.now,
                params.queue,
                params.limit,
            ),
        ).fetchall()
        jobs = sorted(map(row_to_job, rows), key=lambda j: (-j.priority, j.id))
        transitions = append_history(
            conn, [(j.id, j.queue, JobStatus.RUNNING, params.now, None) for j in jobs], self.origin
        )
        return jobs, transitions

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        if not finishes:
            return []
        transitions = await self.file.write(lambda conn: self._finish(conn, finishes, now))
        return _with_progress(finishes, transitions)

    async def jobs_finish_claiming(
        self,
        finishes: Sequence[Finish],
        now: float,
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition], list[Claimed]]:
        def finish_and_claim(
            conn: sqlite3.Connection,
        ) -> tuple[list[Transition], list[Claimed]]:
            finished = self._finish(conn, finishes, now) if finishes else []
            return finished, [self._claim(conn, params) for params in claims]

        finished, claimed = await self.file.write(finish_and_claim, before_commit=_claims_to(early))
        return _with_progress(finishes, finished), claimed

    def _finish(
        self, conn: sqlite3.Connection, finishes: Sequence[Finish], now: float
    ) -> list[Transition]:
        by_id = {f.job_id: f for f in finishes}
        history: list[HistoryRow] = []
        for chunk in chunks(finishes):
            params: list[Any] = []
            for f in chunk:
                ended = None if f.status in _NOT_ENDED else now
                params += (
                    f.job_id,
                    f.token,
                    f.status.value,
                    f.result,
                    f.error,
                    f.traceback,
                    None if f.progress is NO_PROGRESS else _codec.encode(f.progress),
                    ended,
                    f.scheduled_at,
                )
            # A run put back or retried while its cancellation was pending ends
            # cancelled instead.
            put_back = f"f.column3 IN {SQL.OVERRIDDEN_BY_CANCEL} AND jobs.status = {SQL.CANCELLING}"
            # A run put back unfinished (its worker stopping) was no attempt.
            requeued = f"f.column3 = {SQL.QUEUED} AND jobs.status <> {SQL.CANCELLING}"
            rows = conn.execute(
                f"UPDATE jobs SET status = CASE WHEN {put_back}"
                f"   THEN {SQL.CANCELLED} ELSE f.column3 END,"
                f" finished_at = CASE WHEN {put_back} THEN ? ELSE f.column8 END,"
                " result = f.column4, error = f.column5, traceback = f.column6,"
                " progress = f.column7, scheduled_at = f.column9, updated_at = ?,"
                f" attempts = CASE WHEN {requeued} THEN max(jobs.attempts - 1, 0)"
                "  ELSE jobs.attempts END,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                f" FROM (VALUES {values_list(9, len(chunk))}) AS f"
                " WHERE jobs.id = f.column1 AND jobs.lease_token = f.column2"
                " RETURNING jobs.id, jobs.queue, jobs.status",
                [now, now, *params],
            ).fetchall()
            for job_id, queue, status in rows:
                f = by_id[job_id]
                message = f.message if status == f.status.value else "cancelled"
                history.append((job_id, queue, BY_VALUE[status], now, message))
        return append_history(conn, history, self.origin)

    async def jobs_progress(self, writes: Sequence[ProgressWrite], now: float) -> None:
        if not writes:
            return

        def write_progress(conn: sqlite3.Connection) -> None:
            for chunk in chunks(writes):
                params: list[Any] = [now]
                for w in chunk:
                    params += (w.job_id, w.token, _codec.encode(w.progress))
                conn.execute(
                    "UPDATE jobs SET progress = f.column3, updated_at = ?"
                    f" FROM (VALUES {values_list(3, len(chunk))}) AS f"
                    " WHERE jobs.id = f.column1 AND jobs.lease_token = f.column2",
                    params,
                )

        await self.file.write(write_progress, durable=False)

    async def periodic_first_seen(self, queue: str, now: float) -> float:
        def first_seen(conn: sqlite3.Connection) -> float:
            conn.execute(
                "INSERT INTO periodic (queue, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (queue, now),
            )
            row = conn.execute("SELECT first_seen FROM periodic WHERE queue = ?", (queue,))
            return float(row.fetchone()[0])

        return await self.file.write(first_seen)

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        def promote(conn: sqlite3.Connection) -> list[Transition]:
            rows = conn.execute(
                f"UPDATE jobs SET status = {SQL.QUEUED}, updated_at = ?"
                f" WHERE id IN (SELECT id FROM jobs WHERE status = {SQL.DUE}"
                " AND scheduled_at <= ? ORDER BY scheduled_at LIMIT ?)"
                " RETURNING id, queue",
                (now, now, limit),
            ).fetchall()
            return append_history(
                conn,
                [(job_id, queue, JobStatus.QUEUED, now, "due") for job_id, queue in rows],
                self.origin,
            )

        return await self.file.write(promote)

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        def request_cancel(conn: sqlite3.Connection) -> tuple[Job, list[Transition]]:
            job = job_row(conn, job_id, queue)
            outcome = rules.cancel_request(job.status)
            if outcome is None:
                return job, []  # already ending or ended: nothing to do
            new, message = outcome
            ended = now if new is JobStatus.CANCELLED else None
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (new.value, ended, now, job_id),
            )
            transitions = append_history(
                conn, [(job.id, job.queue, new, now, message)], self.origin
            )
            job = job_row(conn, job_id, None)
            return job, transitions

        return await self.file.write(request_cancel)

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        def rerun(conn: sqlite3.Connection) -> tuple[Job, list[Transition]]:
            job = job_row(conn, job_id, None)
            refusal = rules.rerun_refusal(job_id, job.status)
            if refusal is not None:
                raise InvalidTransition(refusal)
            conn.execute(
                f"UPDATE jobs SET status = {SQL.QUEUED}, attempts = 0, orphanings = 0,"
                " result = NULL,"
                " error = NULL, traceback = NULL, progress = NULL, started_at = NULL,"
                " scheduled_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            message = f"rerun by {by}" if by else "rerun"
            transitions = append_history(
                conn, [(job.id, job.queue, JobStatus.QUEUED, now, message)], self.origin
            )
            job = job_row(conn, job_id, None)
            return job, transitions

        return await self.file.write(rerun)

    async def outcome_transaction(self) -> OutcomeTransaction:
        raise ValidationError(
            "conveyor.transaction() shares a PostgreSQL transaction between a handler and"
            " its outcome: a SQLite store commits its own (use a PostgresStore)"
        )

    async def jobs_purge(self, params: PurgeParams) -> int:
        statuses = sorted(s.value for s in params.statuses if s in TERMINAL)
        if not statuses:
            return 0
        # A range of jobs_finished per status: the jobs to delete, and no others. (The
        # unary + keeps a queue's purge off jobs_by_queue, which would read every job of
        # the queue, however recent.)
        where = f"finished_at < ? AND status IN ({', '.join('?' * len(statuses))})" + (
            " AND +queue = ?" if params.queue is not None else ""
        )
        args: list[Any] = [params.finished_before, *statuses]
        if params.queue is not None:
            args.append(params.queue)

        def purge(conn: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM jobs WHERE {where} LIMIT ?", [*args, params.limit]
                ).fetchall()
            ]
            for chunk in chunks(ids, ROWS_PER_STATEMENT):
                marks = ", ".join("?" * len(chunk))
                conn.execute(f"DELETE FROM job_history WHERE job_id IN ({marks})", chunk)
                conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
            return len(ids)

        return await self.file.write(purge)


def _with_progress(finishes: Sequence[Finish], transitions: list[Transition]) -> list[Transition]:
    """The transitions of outcomes with the progress each run ended with (as written)."""
    progress = {f.job_id: f.progress for f in finishes}
    return [replace(t, progress=progress[t.job_id]) for t in transitions]


def _claims_to(
    early: EarlyClaims | None,
) -> Callable[[tuple[object, list[Claimed]]], None] | None:
    """A claiming write's before_commit: hands ``early`` the claims of its result."""
    if early is None:
        return None
    return lambda result: early(result[1])
