"""The PostgreSQL store: many worker processes, on many machines, share one database.

Workers claim with ``FOR UPDATE SKIP LOCKED``, so concurrent claims never wait on each
other nor take the same job. Every write that changes a job's status appends history in
the same transaction and NOTIFYs the schema's channel, which every other runtime LISTENs
on: they hear new jobs and cancellations at once. History seqs come from a one-row
counter taken as the transaction's last step, so they become visible in commit order
and a runtime tailing the history never skips one (see _postgres_schema.py).

The connections are in _postgres_db.py, the reads in _postgres_reads.py. Every write is
one transaction, one statement per step whatever the batch size (arrays, ``unnest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import _codec
from .._errors import InvalidTransition, JobNotFound, StoreBusy
from .._models import NO_PROGRESS, Job
from .._states import BY_VALUE, TERMINAL, JobStatus
from . import _rules as rules
from ._base import (
    ClaimParams,
    Finish,
    NewJob,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    Transition,
)
from ._postgres_db import Connection, PostgresDB
from ._postgres_reads import PostgresReads
from ._rows import JOB_COLUMNS, row_to_job

History = tuple[str, str, JobStatus, float, str | None]  # job_id, queue, status, at, message

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})
_JOBS_COLUMNS: Final = ", ".join(f"jobs.{c.strip()}" for c in JOB_COLUMNS.split(","))


def split_schema(url: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL without its ``schema=`` query parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(PostgresReads):
    """Jobs in a PostgreSQL database (asyncpg), in tables of their own ``schema``.

    ``dsn`` is a ``postgresql://`` URL; a ``schema=NAME`` query parameter in it sets
    ``schema`` (default ``conveyor``), so one database can hold several independent
    sets of queues. ``lock_timeout`` is how long a write waits for a row or lock another
    connection holds before failing with :class:`StoreBusy`; ``command_timeout`` bounds
    any one call. Each runtime opens up to ``pool_size`` connections per pool (two
    pools), plus one that listens.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lock_timeout: float = 5.0,
        command_timeout: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        dsn, in_url = split_schema(dsn)
        super().__init__(
            PostgresDB(
                dsn,
                schema=schema or in_url or "conveyor",
                lock_timeout=lock_timeout,
                command_timeout=command_timeout,
                pool_size=pool_size,
            )
        )

    async def open(self, origin: str) -> None:
        self._origin = origin
        await self.db.open(self._notified)

    async def close(self) -> None:
        await self.db.close()

    async def _append_history(self, conn: Connection, rows: Sequence[History]) -> list[Transition]:
        """Append history rows and notify listeners, in one statement. Taking the seqs
        locks the counter row until this transaction ends: keep this the last step."""
        if not rows:
            return []
        n = len(rows)
        last = await conn.fetchval(
            f"WITH s AS (UPDATE {self.t}history_seq SET last = last + $1 RETURNING last),"
            f" ins AS (INSERT INTO {self.t}job_history"
            "   (seq, job_id, queue, status, at, message, origin)"
            "   SELECT s.last - $1 + r.ord, r.job_id, r.queue, r.status, r.at, r.message, $7"
            "   FROM s, unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::text[])"
            "   WITH ORDINALITY AS r(job_id, queue, status, at, message, ord))"
            " SELECT last, pg_notify($8, $7) FROM s",
            n,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2].value for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            self._origin,
            self.db.channel,
        )
        first = int(last) - n + 1
        return [
            Transition(seq=first + i, job_id=r[0], queue=r[1], status=r[2], at=r[3], message=r[4])
            for i, r in enumerate(rows)
        ]

    # -- the hot path ------------------------------------------------------------------

    async def jobs_insert(self, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        if not jobs:
            return []
        may_clash = any(j.unique_key is not None or j.derived_id for j in jobs)

        async def insert(conn: Connection) -> list[Transition | Job]:
            rows = await conn.fetch(
                f"INSERT INTO {self.t}jobs (id, queue, status, payload, priority, max_attempts,"
                " created_by, created_at, scheduled_at, updated_at, timeout, unique_key)"
                " SELECT id, queue, status, payload, priority, max_attempts, created_by,"
                "  created_at, scheduled_at, created_at, timeout, unique_key"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::json[], $5::int4[],"
                "  $6::int8[], $7::text[], $8::float8[], $9::float8[], $10::float8[],"
                "  $11::text[]) AS r(id, queue, status, payload, priority, max_attempts,"
                "  created_by, created_at, scheduled_at, timeout, unique_key)"
                + (" ON CONFLICT DO NOTHING RETURNING id" if may_clash else ""),
                [j.id for j in jobs],
                [j.queue for j in jobs],
                [j.status.value for j in jobs],
                [j.payload for j in jobs],
                [j.priority for j in jobs],
                [j.max_attempts for j in jobs],
                [j.created_by for j in jobs],
                [j.created_at for j in jobs],
                [j.scheduled_at for j in jobs],
                [j.timeout for j in jobs],
                [j.unique_key for j in jobs],
            )
            inserted = {row[0] for row in rows} if may_clash else None
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
                    results.append(await self._locked_job(conn, j.id, None, lock=False))
            return results

        return await self.db.write(insert)

    async def _unfinished_with_key(self, conn: Connection, queue: str, key: str) -> Job:
        row = await conn.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM {self.t}jobs WHERE queue = $1 AND unique_key = $2"
            f" AND status IN {rules.UNFINISHED_SQL}",
            queue,
            key,
        )
        if row is None:  # the job that held the key ended between the two statements
            raise StoreBusy(
                f"{self.db.where}: the unfinished job with unique_key {key!r} of queue"
                f" {queue!r} ended while this enqueue waited for it; nothing was changed,"
                " enqueue again"
            )
        return row_to_job(row)

    async def jobs_claim(self, params: ClaimParams) -> tuple[list[Job], list[Transition]]:
        async def claim(conn: Connection) -> tuple[list[Job], list[Transition]]:
            rows = await conn.fetch(
                f"UPDATE {self.t}jobs AS jobs SET status = 'running', attempts = attempts + 1,"
                " progress = NULL, lease_owner = $1, lease_token = $2, lease_expires_at = $3,"
                " started_at = $4, updated_at = $4"
                f" WHERE id IN (SELECT id FROM {self.t}jobs WHERE queue = $5"
                "  AND status = 'queued' ORDER BY priority DESC, id LIMIT $6"
                "  FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_JOBS_COLUMNS}",
                params.owner,
                params.token,
                params.lease_expires_at,
                params.now,
                params.queue,
                params.limit,
            )
            jobs = sorted(map(row_to_job, rows), key=lambda j: (-j.priority, j.id))
            transitions = await self._append_history(
                conn, [(j.id, j.queue, JobStatus.RUNNING, params.now, None) for j in jobs]
            )
            return jobs, transitions

        return await self.db.write(claim, durable=False)

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        if not finishes:
            return []
        by_id = {f.job_id: f for f in finishes}

        async def finish(conn: Connection) -> list[Transition]:
            # A run put back or retried while its cancellation was pending ends
            # cancelled instead.
            put_back = "f.status IN ('queued', 'scheduled') AND jobs.status = 'cancelling'"
            rows = await conn.fetch(
                f"UPDATE {self.t}jobs AS jobs SET"
                f" status = CASE WHEN {put_back} THEN 'cancelled' ELSE f.status END,"
                f" finished_at = CASE WHEN {put_back} THEN $1 ELSE f.finished_at END,"
                " result = f.result, error = f.error, traceback = f.traceback,"
                " progress = f.progress, scheduled_at = f.scheduled_at, updated_at = $1,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::json[], $6::text[],"
                "  $7::text[], $8::json[], $9::float8[], $10::float8[])"
                "  AS f(id, token, status, result, error, traceback, progress, finished_at,"
                "  scheduled_at)"
                " WHERE jobs.id = f.id AND jobs.lease_token = f.token"
                " RETURNING jobs.id, jobs.queue, jobs.status",
                now,
                [f.job_id for f in finishes],
                [f.token for f in finishes],
                [f.status.value for f in finishes],
                [f.result for f in finishes],
                [f.error for f in finishes],
                [f.traceback for f in finishes],
                [
                    None if f.progress is NO_PROGRESS else _codec.encode(f.progress)
                    for f in finishes
                ],
                [None if f.status in _NOT_ENDED else now for f in finishes],
                [f.scheduled_at for f in finishes],
            )
            history: list[History] = []
            order = {job_id: i for i, job_id in enumerate(by_id)}  # the callers' order
            for job_id, queue, status in sorted(rows, key=lambda row: order[row[0]]):
                f = by_id[job_id]
                message = f.message if status == f.status.value else "cancelled"
                history.append((job_id, queue, BY_VALUE[status], now, message))
            return await self._append_history(conn, history)

        transitions = await self.db.write(finish)
        return [
            Transition(
                seq=t.seq,
                job_id=t.job_id,
                queue=t.queue,
                status=t.status,
                at=t.at,
                message=t.message,
                progress=by_id[t.job_id].progress,
            )
            for t in transitions
        ]

    async def jobs_progress(self, writes: Sequence[ProgressWrite], now: float) -> None:
        if not writes:
            return

        async def write_progress(conn: Connection) -> None:
            await conn.execute(
                f"UPDATE {self.t}jobs AS jobs SET progress = f.progress, updated_at = $1"
                " FROM unnest($2::text[], $3::text[], $4::json[]) AS f(id, token, progress)"
                " WHERE jobs.id = f.id AND jobs.lease_token = f.token",
                now,
                [w.job_id for w in writes],
                [w.token for w in writes],
                [_codec.encode(w.progress) for w in writes],
            )

        await self.db.write(write_progress, durable=False)

    # -- leases ------------------------------------------------------------------------

    async def jobs_heartbeat(self, owner: str, lease_expires_at: float) -> set[str]:
        async def renew(conn: Connection) -> set[str]:
            rows = await conn.fetch(
                f"UPDATE {self.t}jobs SET lease_expires_at = $1"
                " WHERE lease_owner = $2 AND lease_token IS NOT NULL RETURNING id",
                lease_expires_at,
                owner,
            )
            return {row[0] for row in rows}

        return await self.db.write(renew, durable=False)

    async def jobs_rescue(self, params: RescueParams) -> list[Transition]:
        if params.expired_before is None and not params.dead_owners:
            return []
        # Another runtime rescuing the same jobs, or their owner finishing them, holds
        # their rows: skip those rather than wait (whoever holds them decides).
        return await self._put_back(
            "(lease_expires_at < $1 OR lease_owner = ANY($2::text[])) FOR UPDATE SKIP LOCKED",
            [params.expired_before, list(params.dead_owners)],
            params.now,
            max_orphanings=params.max_orphanings,
        )

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        return await self._put_back(
            "lease_owner = $1 FOR UPDATE", [owner], now, max_orphanings=None
        )

    async def _put_back(
        self, condition: str, args: list[Any], now: float, *, max_orphanings: int | None
    ) -> list[Transition]:
        """Clear the leases of jobs matching ``condition`` (see rules.put_back)."""

        async def put_back(conn: Connection) -> list[Transition]:
            rows = await conn.fetch(
                f"SELECT id, queue, status, orphanings FROM {self.t}jobs"
                f" WHERE lease_token IS NOT NULL AND {condition}",
                *args,
            )
            outcomes = [rules.put_back(r[2], r[3], max_orphanings) for r in rows]
            await conn.execute(
                f"UPDATE {self.t}jobs AS jobs SET status = u.status, error = u.error,"
                " finished_at = CASE WHEN u.status = 'queued' THEN NULL ELSE $1::float8 END,"
                " updated_at = $1, orphanings = u.orphanings,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::int4[])"
                "  AS u(id, status, error, orphanings) WHERE jobs.id = u.id",
                now,
                [r[0] for r in rows],
                [o.status.value for o in outcomes],
                [o.error for o in outcomes],
                [o.orphanings for o in outcomes],
            )
            return await self._append_history(
                conn,
                [
                    (r[0], r[1], o.status, now, o.message)
                    for r, o in zip(rows, outcomes, strict=True)
                ],
            )

        return await self.db.write(put_back)

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        async def promote(conn: Connection) -> list[Transition]:
            rows = await conn.fetch(
                f"UPDATE {self.t}jobs SET status = 'queued', updated_at = $1"
                f" WHERE id IN (SELECT id FROM {self.t}jobs WHERE status = 'scheduled'"
                "  AND scheduled_at <= $1 ORDER BY scheduled_at LIMIT $2"
                "  FOR UPDATE SKIP LOCKED)"
                " RETURNING id, queue",
                now,
                limit,
            )
            return await self._append_history(
                conn, [(job_id, queue, JobStatus.QUEUED, now, "due") for job_id, queue in rows]
            )

        return await self.db.write(promote)

    # -- what operators ask for --------------------------------------------------------

    async def _locked_job(
        self, conn: Connection, job_id: str, queue: str | None, *, lock: bool = True
    ) -> Job:
        row = await conn.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM {self.t}jobs WHERE id = $1"
            + (" FOR UPDATE" if lock else ""),
            job_id,
        )
        if row is None or (queue is not None and row[1] != queue):
            raise JobNotFound(job_id)
        return row_to_job(row)

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async def request_cancel(conn: Connection) -> tuple[Job, list[Transition]]:
            job = await self._locked_job(conn, job_id, queue)
            outcome = rules.cancel_request(job.status)
            if outcome is None:
                return job, []  # already ending or ended: nothing to do
            new, message = outcome
            await conn.execute(
                f"UPDATE {self.t}jobs SET status = $1, finished_at = $2, updated_at = $3"
                " WHERE id = $4",
                new.value,
                now if new is JobStatus.CANCELLED else None,
                now,
                job_id,
            )
            job = await self._locked_job(conn, job_id, None)
            return job, await self._append_history(conn, [(job.id, job.queue, new, now, message)])

        return await self.db.write(request_cancel)

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async def rerun(conn: Connection) -> tuple[Job, list[Transition]]:
            job = await self._locked_job(conn, job_id, None)
            refusal = rules.rerun_refusal(job_id, job.status)
            if refusal is not None:
                raise InvalidTransition(refusal)
            await conn.execute(
                f"UPDATE {self.t}jobs SET status = 'queued', attempts = 0, orphanings = 0,"
                " result = NULL, error = NULL, traceback = NULL, progress = NULL,"
                " started_at = NULL, scheduled_at = NULL, finished_at = NULL, updated_at = $1"
                " WHERE id = $2",
                now,
                job_id,
            )
            job = await self._locked_job(conn, job_id, None)
            message = f"rerun by {by}" if by else "rerun"
            history = [(job.id, job.queue, JobStatus.QUEUED, now, message)]
            return job, await self._append_history(conn, history)

        return await self.db.write(rerun)

    async def jobs_purge(self, params: PurgeParams) -> int:
        statuses = sorted(s.value for s in params.statuses if s in TERMINAL)
        if not statuses:
            return 0

        async def purge(conn: Connection) -> int:
            rows = await conn.fetch(
                f"SELECT id FROM {self.t}jobs WHERE finished_at < $1"
                " AND status = ANY($2::text[]) AND ($3::text IS NULL OR queue = $3)"
                " LIMIT $4 FOR UPDATE SKIP LOCKED",
                params.finished_before,
                statuses,
                params.queue,
                params.limit,
            )
            ids = [row[0] for row in rows]
            await conn.execute(f"DELETE FROM {self.t}job_history WHERE job_id = ANY($1)", ids)
            await conn.execute(f"DELETE FROM {self.t}jobs WHERE id = ANY($1)", ids)
            return len(ids)

        return await self.db.write(purge)
