"""The embedded default store: one SQLite file, through aiosqlite.

The file's connections and transactions are in _sqlite_file.py (read its docstring for
why three connections), the reads in _sqlite_reads.py; this module holds the writes.
Every write is one transaction, a plain function of a sqlite3 connection that runs whole
on the connection's thread (see SQLiteFile.write); batches go in one statement per chunk
of rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

from .. import _codec
from .._errors import InvalidTransition, JobNotFound
from .._models import NO_PROGRESS, Job
from .._states import BY_VALUE, TERMINAL, JobStatus, Owner, sources
from ._base import (
    ClaimParams,
    Finish,
    NewJob,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    Transition,
)
from ._sqlite_file import SQLiteFile
from ._sqlite_reads import SQLiteReads
from ._sqlite_rows import JOB_COLUMNS, ROWS_PER_STATEMENT, chunks, row_to_job, values_list

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})
_RERUN_FROM: Final = frozenset(sources(JobStatus.QUEUED, Owner.USER))


class SQLiteStore(SQLiteReads):
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

    async def open(self, origin: str) -> None:
        self._origin = origin
        await self.file.open()

    async def close(self) -> None:
        await self.file.close()

    def _append_history(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, str, JobStatus, float, str | None]],
    ) -> list[Transition]:
        """Append history rows (job_id, queue, status, at, message); one round trip per
        chunk. Under the write lock AUTOINCREMENT hands out consecutive seqs in insertion
        order, so sorting the returned seqs pairs them with the rows."""
        transitions: list[Transition] = []
        for chunk in chunks(rows, ROWS_PER_STATEMENT):
            params: list[Any] = []
            for job_id, queue, status, at, message in chunk:
                params += (job_id, queue, status.value, at, message, self._origin)
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
            by_id = {t.job_id: t for t in transitions}
            results: list[Transition | Job] = []
            for j in jobs:
                if j.id in by_id:
                    results.append(by_id[j.id])
                elif j.unique_key is not None:
                    results.append(self._unfinished_with_key(conn, j.queue, j.unique_key))
                else:
                    results.append(self._locked_job(conn, j.id, None))
            return results

        return await self.file.write(insert)

    def _unfinished_with_key(self, conn: sqlite3.Connection, queue: str, key: str | None) -> Job:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND unique_key = ?"
            " AND status IN ('scheduled', 'queued', 'running', 'cancelling')",
            (queue, key),
        ).fetchall()
        return row_to_job(rows[0])

    async def jobs_claim(self, params: ClaimParams) -> tuple[list[Job], list[Transition]]:
        def claim(conn: sqlite3.Connection) -> tuple[list[Job], list[Transition]]:
            rows = conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, progress = NULL,"
                " lease_owner = ?,"
                " lease_token = ?, lease_expires_at = ?, started_at = ?, updated_at = ?"
                " WHERE id IN (SELECT id FROM jobs WHERE queue = ? AND status = 'queued'"
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
                put_back = "f.column3 IN ('queued', 'scheduled') AND jobs.status = 'cancelling'"
                rows = conn.execute(
                    f"UPDATE jobs SET status = CASE WHEN {put_back}"
                    "   THEN 'cancelled' ELSE f.column3 END,"
                    f" finished_at = CASE WHEN {put_back} THEN ? ELSE f.column8 END,"
                    " result = f.column4, error = f.column5, traceback = f.column6,"
                    " progress = f.column7, scheduled_at = f.column9, updated_at = ?,"
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
        return [
            Transition(
                seq=t.seq,
                job_id=t.job_id,
                queue=t.queue,
                status=t.status,
                at=t.at,
                message=t.message,
                progress=progress[t.job_id],
            )
            for t in transitions
        ]

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

    async def jobs_heartbeat(self, owner: str, lease_expires_at: float) -> set[str]:
        def renew(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?"
                " WHERE lease_owner = ? AND lease_token IS NOT NULL RETURNING id",
                (lease_expires_at, owner),
            ).fetchall()
            return {row[0] for row in rows}

        return await self.file.write(renew, durable=False)

    async def jobs_rescue(self, params: RescueParams) -> list[Transition]:
        dead = list(params.dead_owners)
        tests: list[str] = []
        args: list[Any] = []
        if params.expired_before is not None:
            tests.append("lease_expires_at < ?")
            args.append(params.expired_before)
        if dead:
            tests.append(f"lease_owner IN ({', '.join('?' * len(dead))})")
            args += dead
        if not tests:
            return []
        return await self._put_back(
            " OR ".join(tests), args, params.now, max_orphanings=params.max_orphanings
        )

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        return await self._put_back("lease_owner = ?", [owner], now, max_orphanings=None)

    async def _put_back(
        self, condition: str, args: list[Any], now: float, *, max_orphanings: int | None
    ) -> list[Transition]:
        """Clear the leases of jobs matching ``condition``: back to queued, or cancelled
        where cancellation was pending. ``max_orphanings`` set means the worker was lost:
        count it, and fail the job once it was lost that many times."""

        def put_back(conn: sqlite3.Connection) -> list[Transition]:
            rows = conn.execute(
                "SELECT id, queue, status, orphanings FROM jobs"
                f" WHERE lease_token IS NOT NULL AND ({condition})",
                args,
            ).fetchall()
            updates: list[tuple[Any, ...]] = []
            history: list[tuple[str, str, JobStatus, float, str | None]] = []
            for job_id, queue, status, orphanings in rows:
                lost = orphanings + (max_orphanings is not None)
                error = None
                if status == JobStatus.CANCELLING:
                    new, message = JobStatus.CANCELLED, "cancelled: its worker stopped"
                elif max_orphanings is None:
                    new, message = JobStatus.QUEUED, "requeued: worker shut down"
                elif lost >= max_orphanings:
                    new, error = JobStatus.FAILED, f"worker lost ({lost} times)"
                    message = f"failed: worker lost {lost} times"
                else:
                    new = JobStatus.QUEUED
                    message = f"requeued: worker lost (lease expired; {lost} of {max_orphanings})"
                ended = None if new is JobStatus.QUEUED else now
                updates.append((new.value, error, ended, now, lost, job_id))
                history.append((job_id, queue, new, now, message))
            conn.executemany(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, updated_at = ?,"
                " orphanings = ?, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " WHERE id = ?",
                updates,
            )
            return self._append_history(conn, history)

        return await self.file.write(put_back)

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        def promote(conn: sqlite3.Connection) -> list[Transition]:
            rows = conn.execute(
                "UPDATE jobs SET status = 'queued', updated_at = ?"
                " WHERE id IN (SELECT id FROM jobs WHERE status = 'scheduled'"
                " AND scheduled_at <= ? ORDER BY scheduled_at LIMIT ?)"
                " RETURNING id, queue",
                (now, now, limit),
            ).fetchall()
            return self._append_history(
                conn, [(job_id, queue, JobStatus.QUEUED, now, "due") for job_id, queue in rows]
            )

        return await self.file.write(promote)

    def _locked_job(self, conn: sqlite3.Connection, job_id: str, queue: str | None) -> Job:
        rows = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchall()
        if not rows or (queue is not None and rows[0][1] != queue):
            raise JobNotFound(job_id)
        return row_to_job(rows[0])

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        def request_cancel(conn: sqlite3.Connection) -> tuple[Job, list[Transition]]:
            job = self._locked_job(conn, job_id, queue)
            if job.status in sources(JobStatus.CANCELLED, Owner.USER):
                new, message, ended = JobStatus.CANCELLED, "cancelled before it ran", now
            elif job.status in sources(JobStatus.CANCELLING, Owner.USER):
                new, message, ended = JobStatus.CANCELLING, "cancellation requested", None
            else:
                return job, []  # already ending or ended: nothing to do
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (new.value, ended, now, job_id),
            )
            transitions = self._append_history(conn, [(job.id, job.queue, new, now, message)])
            job = self._locked_job(conn, job_id, None)
            return job, transitions

        return await self.file.write(request_cancel)

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        def rerun(conn: sqlite3.Connection) -> tuple[Job, list[Transition]]:
            job = self._locked_job(conn, job_id, None)
            if job.status not in _RERUN_FROM:
                raise InvalidTransition(
                    f"job {job_id} is {job.status.value}; only"
                    f" {', '.join(sorted(_RERUN_FROM))} jobs can be rerun"
                )
            conn.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, orphanings = 0, result = NULL,"
                " error = NULL, traceback = NULL, progress = NULL, started_at = NULL,"
                " scheduled_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            message = f"rerun by {by}" if by else "rerun"
            transitions = self._append_history(
                conn, [(job.id, job.queue, JobStatus.QUEUED, now, message)]
            )
            job = self._locked_job(conn, job_id, None)
            return job, transitions

        return await self.file.write(rerun)

    async def jobs_purge(self, params: PurgeParams) -> int:
        statuses = sorted(s.value for s in params.statuses if s in TERMINAL)
        if not statuses:
            return 0
        where = f"finished_at < ? AND status IN ({', '.join('?' * len(statuses))})" + (
            " AND queue = ?" if params.queue is not None else ""
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
