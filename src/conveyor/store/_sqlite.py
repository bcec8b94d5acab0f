"""The embedded default store: one SQLite file, through aiosqlite.

Three connections. Two writers, through which write transactions go one at a time
(``BEGIN IMMEDIATE``, so a transaction never has to upgrade its lock and fail): one with
``synchronous=FULL`` (by default) for writes that must survive power loss once
acknowledged — enqueues, outcomes, cancellations — and one with ``NORMAL`` for writes
whose loss is harmless: claims, lease renewals, progress. A lost claim only means the job
runs again, which at-least-once allows; and in WAL mode the next FULL commit fsyncs the
log, so it makes the earlier NORMAL commits durable too. That saves an fsync on the
hot path between enqueue and start. The third connection reads, so reads never queue
behind writes. WAL mode lets other processes read while one writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal

import aiosqlite
import anyio
import anyio.to_thread

from .. import _codec
from .._clock import to_datetime
from .._errors import (
    InvalidTransition,
    JobNotFound,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from .._models import NO_PROGRESS, HistoryEntry, Job
from .._states import BY_VALUE, TERMINAL, JobStatus, Owner, sources
from ._base import (
    ClaimParams,
    Finish,
    ListParams,
    NewJob,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    Transition,
)
from ._sqlite_rows import (
    JOB_COLUMNS,
    ROWS_PER_STATEMENT,
    TRANSITION_COLUMNS,
    chunks,
    row_to_job,
    row_to_transition,
    statements,
    values_list,
)
from ._sqlite_schema import MIGRATIONS

_BUSY: Final = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_UNAVAILABLE: Final = {
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_CORRUPT,
}


_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})
_RERUN_FROM: Final = frozenset(sources(JobStatus.QUEUED, Owner.USER))


class SQLiteStore:
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
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._fast_writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = anyio.Lock()
        self._origin = ""
        self._data_version = -1

    # -- connections -------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary in _BUSY:
            return StoreBusy(
                f"{self.path}: database is locked: another connection held the write lock"
                f" for more than {self.busy_timeout:g}s; nothing was changed"
            )
        if primary in _UNAVAILABLE:
            return StoreUnavailable(f"{self.path}: {exc}; nothing was changed")
        return StoreError(f"{self.path}: {exc}")

    async def _connect(
        self, *, query_only: bool, synchronous: str | None = None
    ) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, cached_statements=256
        )
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreUnavailable(f"{self.path}: cannot use WAL journal mode (got {mode})")
            await conn.execute(f"PRAGMA synchronous = {synchronous or self.synchronous}")
            if query_only:
                await conn.execute("PRAGMA query_only = 1")
        except BaseException:
            await conn.close()
            raise
        return conn

    def _probe(self) -> None:
        """Open and close the file once with plain sqlite3, so that a path that cannot be
        opened fails here: aiosqlite leaves a worker thread behind when its connect
        fails, which then calls back into an event loop that may be gone."""
        sqlite3.connect(self.path, timeout=self.busy_timeout).close()

    async def open(self, origin: str) -> None:
        self._origin = origin
        try:
            await anyio.to_thread.run_sync(self._probe)
            self._writer = await self._connect(query_only=False)
            await self._migrate()
            self._fast_writer = await self._connect(query_only=False, synchronous="NORMAL")
            self._reader = await self._connect(query_only=True)
        except sqlite3.Error as exc:
            await self.close()
            raise self._error(exc) from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for conn in (self._reader, self._fast_writer, self._writer):
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()
        self._reader = self._fast_writer = self._writer = None

    async def _migrate(self) -> None:
        async with self._transaction() as conn:
            row = await (await conn.execute("PRAGMA user_version")).fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"{self.path}: schema version {version} is newer than this conveyor"
                    f" understands ({len(MIGRATIONS)}); upgrade conveyor"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")
            # Written even when unchanged: a file we cannot write fails here, at start,
            # not at the first enqueue.
            await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    @asynccontextmanager
    async def _transaction(self, *, durable: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: serialised in-process, BEGIN IMMEDIATE, all or nothing.
        ``durable=False`` commits without an fsync of its own (see the module docstring).

        Shielded from cancellation: once begun, a transaction commits or rolls back before
        the caller sees a cancellation, so the connection is never left mid-transaction.
        """
        conn = self._writer if durable else self._fast_writer
        if conn is None:
            raise StoreError("store is not open")
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise self._error(exc) from exc
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException as exc:
                    try:
                        await conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the failed COMMIT or statement already ended it
                    if isinstance(exc, sqlite3.Error):
                        raise self._error(exc) from exc
                    raise

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Any]:
        conn = self._reader
        if conn is None:
            raise StoreError("store is not open")
        try:
            return await conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    async def _append_history(
        self,
        conn: aiosqlite.Connection,
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
            returned = await conn.execute_fetchall(
                "INSERT INTO job_history (job_id, queue, status, at, message, origin)"
                f" VALUES {values_list(6, len(chunk))} RETURNING seq",
                params,
            )
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
        async with self._transaction() as conn:
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
                    rows = await conn.execute_fetchall(
                        f"{sql} ON CONFLICT DO NOTHING RETURNING id", params
                    )
                    inserted = (inserted or set()) | {row[0] for row in rows}
                    inserted |= {j.id for j in chunk if j.unique_key is None and not j.derived_id}
                else:
                    await conn.execute(sql, params)
                    if inserted is not None:
                        inserted |= {j.id for j in chunk}
            new = jobs if inserted is None else [j for j in jobs if j.id in inserted]
            transitions = await self._append_history(
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
                    results.append(await self._unfinished_with_key(conn, j.queue, j.unique_key))
                else:
                    results.append(await self._locked_job(conn, j.id, None))
            return results

    async def _unfinished_with_key(
        self, conn: aiosqlite.Connection, queue: str, key: str | None
    ) -> Job:
        rows = list(
            await conn.execute_fetchall(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND unique_key = ?"
                " AND status IN ('scheduled', 'queued', 'running', 'cancelling')",
                (queue, key),
            )
        )
        return row_to_job(rows[0])

    async def jobs_claim(self, params: ClaimParams) -> tuple[list[Job], list[Transition]]:
        async with self._transaction(durable=False) as conn:
            rows = await conn.execute_fetchall(
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
            )
            jobs = sorted(map(row_to_job, rows), key=lambda j: (-j.priority, j.id))
            transitions = await self._append_history(
                conn, [(j.id, j.queue, JobStatus.RUNNING, params.now, None) for j in jobs]
            )
        return jobs, transitions

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        if not finishes:
            return []
        by_id = {f.job_id: f for f in finishes}
        async with self._transaction() as conn:
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
                rows = await conn.execute_fetchall(
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
                )
                for job_id, queue, status in rows:
                    f = by_id[job_id]
                    message = f.message if status == f.status.value else "cancelled"
                    history.append((job_id, queue, BY_VALUE[status], now, message))
            transitions = await self._append_history(conn, history)
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
        async with self._transaction(durable=False) as conn:
            for chunk in chunks(writes):
                params: list[Any] = [now]
                for w in chunk:
                    params += (w.job_id, w.token, _codec.encode(w.progress))
                await conn.execute(
                    "UPDATE jobs SET progress = f.column3, updated_at = ?"
                    f" FROM (VALUES {values_list(3, len(chunk))}) AS f"
                    " WHERE jobs.id = f.column1 AND jobs.lease_token = f.column2",
                    params,
                )

    async def jobs_heartbeat(self, owner: str, lease_expires_at: float) -> set[str]:
        async with self._transaction(durable=False) as conn:
            rows = await conn.execute_fetchall(
                "UPDATE jobs SET lease_expires_at = ?"
                " WHERE lease_owner = ? AND lease_token IS NOT NULL RETURNING id",
                (lease_expires_at, owner),
            )
        return {row[0] for row in rows}

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
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, queue, status, orphanings FROM jobs"
                f" WHERE lease_token IS NOT NULL AND ({condition})",
                args,
            )
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
            await conn.executemany(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, updated_at = ?,"
                " orphanings = ?, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " WHERE id = ?",
                updates,
            )
            return await self._append_history(conn, history)

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE jobs SET status = 'queued', updated_at = ?"
                " WHERE id IN (SELECT id FROM jobs WHERE status = 'scheduled'"
                " AND scheduled_at <= ? ORDER BY scheduled_at LIMIT ?)"
                " RETURNING id, queue",
                (now, now, limit),
            )
            return await self._append_history(
                conn, [(job_id, queue, JobStatus.QUEUED, now, "due") for job_id, queue in rows]
            )

    async def next_due(self) -> float | None:
        rows = list(
            await self._read("SELECT min(scheduled_at) FROM jobs WHERE status = 'scheduled'")
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def lease_owners(self) -> set[str]:
        rows = await self._read(
            "SELECT DISTINCT lease_owner FROM jobs WHERE lease_token IS NOT NULL"
        )
        return {row[0] for row in rows}

    async def _locked_job(self, conn: aiosqlite.Connection, job_id: str, queue: str | None) -> Job:
        rows = list(
            await conn.execute_fetchall(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        )
        if not rows or (queue is not None and rows[0][1] != queue):
            raise JobNotFound(job_id)
        return row_to_job(rows[0])

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async with self._transaction() as conn:
            job = await self._locked_job(conn, job_id, queue)
            if job.status in sources(JobStatus.CANCELLED, Owner.USER):
                new, message, ended = JobStatus.CANCELLED, "cancelled before it ran", now
            elif job.status in sources(JobStatus.CANCELLING, Owner.USER):
                new, message, ended = JobStatus.CANCELLING, "cancellation requested", None
            else:
                return job, []  # already ending or ended: nothing to do
            await conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (new.value, ended, now, job_id),
            )
            transitions = await self._append_history(conn, [(job.id, job.queue, new, now, message)])
            job = await self._locked_job(conn, job_id, None)
        return job, transitions

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async with self._transaction() as conn:
            job = await self._locked_job(conn, job_id, None)
            if job.status not in _RERUN_FROM:
                raise InvalidTransition(
                    f"job {job_id} is {job.status.value}; only"
                    f" {', '.join(sorted(_RERUN_FROM))} jobs can be rerun"
                )
            await conn.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, orphanings = 0, result = NULL,"
                " error = NULL, traceback = NULL, progress = NULL, started_at = NULL,"
                " scheduled_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            message = f"rerun by {by}" if by else "rerun"
            transitions = await self._append_history(
                conn, [(job.id, job.queue, JobStatus.QUEUED, now, message)]
            )
            job = await self._locked_job(conn, job_id, None)
        return job, transitions

    # -- reads -------------------------------------------------------------------------

    async def job_get(self, job_id: str) -> Job | None:
        rows = list(await self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)))
        return row_to_job(rows[0]) if rows else None

    async def jobs_list(self, params: ListParams) -> list[Job]:
        where: list[str] = []
        args: list[Any] = []
        if params.queue is not None:
            where.append("queue = ?")
            args.append(params.queue)
        if params.status is not None:
            where.append("status = ?")
            args.append(params.status.value)
        if params.before is not None:
            where.append("id < ?")
            args.append(params.before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs{clause} ORDER BY id DESC LIMIT ?",
            [*args, params.limit],
        )
        return [row_to_job(row) for row in rows]

    async def job_history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self._read(
            "SELECT seq, job_id, status, at, message FROM job_history WHERE job_id = ?"
            " ORDER BY seq",
            (job_id,),
        )
        return [
            HistoryEntry(
                seq=seq, job_id=jid, status=BY_VALUE[status], at=to_datetime(at), message=msg
            )
            for seq, jid, status, at, msg in rows
        ]

    async def history_after(
        self, seq: int, limit: int, *, include_own: bool
    ) -> tuple[list[Transition], int]:
        # One statement, so one snapshot: the high-water mark and the rows agree, and the
        # next call scans only rows written since.
        rows = list(
            await self._read(
                f"SELECT top.m, {TRANSITION_COLUMNS}"
                " FROM (SELECT coalesce(max(seq), 0) AS m FROM job_history) AS top"
                " LEFT JOIN job_history AS h ON h.seq > ? AND h.seq <= top.m AND h.origin != ?"
                " LEFT JOIN jobs ON jobs.id = h.job_id ORDER BY h.seq LIMIT ?",
                (seq, "" if include_own else self._origin, limit),
            )
        )
        transitions = [row_to_transition(row[1:]) for row in rows if row[1] is not None]
        if not rows:
            return transitions, seq
        if len(transitions) == limit:
            return transitions, transitions[-1].seq
        return transitions, max(seq, int(rows[0][0]))

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
        async with self._transaction() as conn:
            ids = [
                row[0]
                for row in await conn.execute_fetchall(
                    f"SELECT id FROM jobs WHERE {where} LIMIT ?", [*args, params.limit]
                )
            ]
            for chunk in chunks(ids, ROWS_PER_STATEMENT):
                marks = ", ".join("?" * len(chunk))
                await conn.execute(f"DELETE FROM job_history WHERE job_id IN ({marks})", chunk)
                await conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
        return len(ids)

    async def history_page(
        self, after: int, limit: int, *, queue: str | None, job_id: str | None
    ) -> list[Transition]:
        where: list[str] = ["h.seq > ?"]
        args: list[Any] = [after]
        if queue is not None:
            where.append("h.queue = ?")
            args.append(queue)
        if job_id is not None:
            where.append("h.job_id = ?")
            args.append(job_id)
        rows = await self._read(
            f"SELECT {TRANSITION_COLUMNS} FROM job_history AS h"
            " LEFT JOIN jobs ON jobs.id = h.job_id"
            f" WHERE {' AND '.join(where)} ORDER BY h.seq LIMIT ?",
            [*args, limit],
        )
        return [row_to_transition(row) for row in rows]

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, status, n in await self._read(
            "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"
        ):
            counts.setdefault(queue, {})[BY_VALUE[status]] = n
        return counts

    async def last_seq(self) -> int:
        rows = list(await self._read("SELECT coalesce(max(seq), 0) FROM job_history"))
        return int(rows[0][0])

    async def changed(self) -> bool:
        rows = list(await self._read("PRAGMA data_version"))
        version = int(rows[0][0])
        changed = version != self._data_version
        self._data_version = version
        return changed
