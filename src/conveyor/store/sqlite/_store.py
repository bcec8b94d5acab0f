"""The embedded default store: one SQLite file, through aiosqlite.

The file's connections and transactions are in _file.py (read its docstring for
why three connections), the reads in _reads.py, the writes off the hot path (leases,
promotion, cancel, rerun, purge) in _writes.py; this module holds the hot path:
insert, claim, finish and progress.

Every write is one transaction, a plain function of a sqlite3 connection that runs whole
on the connection's thread (see SQLiteFile.write); batches go in one statement per chunk
of rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

from msgspec.structs import replace

from ... import _codec
from ..._models import NO_PROGRESS, Job
from ..._states import BY_VALUE, JobStatus
from .. import _rules as rules
from .._base import ClaimParams, Finish, NewJob, ProgressWrite, Transition
from .._rows import JOB_COLUMNS, row_to_job
from .._rules import SQL
from ._commits import SQLiteCommits
from ._file import SQLiteFile
from ._sql import ROWS_PER_STATEMENT, chunks, values_list
from ._writes import SQLiteWrites

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})


class SQLiteStore(SQLiteWrites):
    """Jobs in one SQLite file. Every process using the file must be on this machine.

    ``synchronous="NORMAL"`` trades durability of the last commits on power loss (not on
    a process crash) for speed; the default, ``"FULL"``, loses nothing acknowledged.
    ``busy_timeout`` is how long a write waits for another process's write lock before
    failing with :class:`StoreBusy`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        super().__init__(SQLiteFile(Path(path), synchronous=synchronous, busy_timeout=busy_timeout))
        self.path = self.file.path
        self.synchronous = synchronous
        self.commits = SQLiteCommits(self.file)

    async def open(self, origin: str) -> None:
        self._origin = origin
        await self.file.open()

    async def close(self) -> None:
        await self.file.close()

    # -- writes ------------------------------------------------------------------------

    async def jobs_insert(self, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        if not jobs:
            return []

        def insert(conn: sqlite3.Connection) -> list[Transition | Job]:
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
                    )
                sql = (
                    "INSERT INTO jobs (id, queue, status, payload, priority, max_attempts,"
                    " created_by, created_at, scheduled_at, updated_at, timeout, unique_key)"
                    f" VALUES {values_list(12, len(chunk))}"
                )
                if any(j.unique_key is not None or j.derived_id for j in chunk):
                    rows = conn.execute(
                        f"{sql} ON CONFLICT DO NOTHING RETURNING id", params
                    ).fetchall()
                    inserted = (inserted or set()) | {row[0] for row in rows}
                    inserted |= {j.id for j in chunk if j.unique_key is None and not j.derived_id}
                else:
                    conn.execute(sql, params)
                    if inserted is not None:
                        inserted |= {j.id for j in chunk}
            new = jobs if inserted is None else [j for j in jobs if j.id in inserted]
            transitions = self._append_history(
                conn, [(j.id, j.queue, j.status, j.created_at, None) for j in new]
            )
            if inserted is None:
                return list(transitions)
            kept_out_by = {
                j.id: (
                    self._unfinished_with_key(conn, j.queue, j.unique_key)
                    if j.unique_key is not None
                    else self._locked_job(conn, j.id, None)
                )
                for j in jobs
                if j.id not in inserted
            }
            return rules.insert_outcomes(jobs, transitions, kept_out_by)

        return await self.file.write(insert)

    def _unfinished_with_key(self, conn: sqlite3.Connection, queue: str, key: str) -> Job:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND unique_key = ?"
            f" AND status IN {SQL.UNFINISHED}",
            (queue, key),
        ).fetchall()
        return row_to_job(rows[0])

    async def jobs_claim(self, params: ClaimParams) -> tuple[list[Job], list[Transition]]:
        def claim(conn: sqlite3.Connection) -> tuple[list[Job], list[Transition]]:
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
            transitions = self._append_history(
                conn, [(j.id, j.queue, JobStatus.RUNNING, params.now, None) for j in jobs]
            )
            return jobs, transitions

        return await self.file.write(claim, durable=False)

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        if not finishes:
            return []
        by_id = {f.job_id: f for f in finishes}

        def finish(conn: sqlite3.Connection) -> list[Transition]:
            history: list[tuple[str, str, JobStatus, float, str | None]] = []
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
                put_back = (
                    f"f.column3 IN {SQL.OVERRIDDEN_BY_CANCEL} AND jobs.status = {SQL.CANCELLING}"
                )
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
            return self._append_history(conn, history)

        transitions = await self.file.write(finish)
        progress = {f.job_id: f.progress for f in finishes}
        return [replace(t, progress=progress[t.job_id]) for t in transitions]

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
