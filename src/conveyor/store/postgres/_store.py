"""The PostgreSQL store: many worker processes, on many machines, share one database.

Workers claim with ``FOR UPDATE SKIP LOCKED``, so concurrent claims never wait on each
other nor take the same job. Every write that changes a job's status appends history in
the same transaction and NOTIFYs the schema's channel, which every other runtime LISTENs
on: they hear new jobs and cancellations at once. History seqs come from a one-row
counter taken as the transaction's last step, so they become visible in commit order
and a runtime tailing the history never skips one (see _schema.py).

The connections are in _db.py, the reads in _reads.py, the writes off
the hot path (history, leases, promotion, cancel, rerun, purge) in _writes.py;
this module holds the hot path: insert, claim, finish and progress. Each of these is a
single statement whatever the batch size (arrays, ``unnest``), which makes its change,
appends its history and notifies in one round trip (see _change): no BEGIN and
COMMIT round trips, which had been most of an idle runtime's enqueue-to-start latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from msgspec.structs import replace

from ... import _codec
from ..._errors import StoreBusy
from ..._models import NO_PROGRESS, Job
from ..._states import JobStatus
from .. import _rules as rules
from .._base import (
    ClaimParams,
    Finish,
    NewJob,
    ProgressWrite,
    Transition,
)
from .._rows import JOB_COLUMNS, row_to_job
from .._rules import SQL
from ._commits import PostgresCommits
from ._db import Connection, PostgresDB
from ._writes import PostgresWrites

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})
_JOBS_COLUMNS: Final = ", ".join(f"jobs.{c.strip()}" for c in JOB_COLUMNS.split(","))


def split_schema(url: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL without its ``schema=`` query parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(PostgresWrites):
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
        self.commits = PostgresCommits(self.db)

    async def open(self, origin: str) -> None:
        self._origin = self.commits.origin = origin
        await self.db.open(self.commits.notified)

    async def close(self) -> None:
        await self.db.close()

    # -- the hot path ------------------------------------------------------------------

    async def jobs_insert(self, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        if not jobs:
            return []
        may_clash = any(j.unique_key is not None or j.derived_id for j in jobs)
        change = (
            f"INSERT INTO {self.t}jobs (id, queue, status, payload, priority, max_attempts,"
            " created_by, created_at, scheduled_at, updated_at, timeout, unique_key)"
            " SELECT id, queue, status, payload, priority, max_attempts, created_by,"
            "  created_at, scheduled_at, created_at, timeout, unique_key"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::json[], $5::int4[],"
            "  $6::int8[], $7::text[], $8::float8[], $9::float8[], $10::float8[],"
            "  $11::text[]) AS r(id, queue, status, payload, priority, max_attempts,"
            "  created_by, created_at, scheduled_at, timeout, unique_key)"
            + (" ON CONFLICT DO NOTHING" if may_clash else "")
            + " RETURNING id AS h_job_id, queue AS h_queue, status AS h_status,"
            " created_at AS h_at, NULL::text AS h_message"
        )
        args = [
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
        ]
        order_by = "h_job_id"  # ids grow: the order they were made in
        if not may_clash:
            rows = await self._change(change, args, order_by=order_by)
            by_id = {t.job_id: t for t in self._transitions(rows)}
            return [by_id[j.id] for j in jobs]

        async def insert(conn: Connection) -> list[Transition | Job]:
            rows = await self._change(change, args, order_by=order_by, conn=conn)
            transitions = self._transitions(rows)
            inserted = {t.job_id for t in transitions}
            kept_out_by = {
                j.id: await (
                    self._unfinished_with_key(conn, j.queue, j.unique_key)
                    if j.unique_key is not None
                    else self._locked_job(conn, j.id, None, lock=False)
                )
                for j in jobs
                if j.id not in inserted
            }
            return rules.insert_outcomes(jobs, transitions, kept_out_by)

        return await self.db.write(insert)

    async def _unfinished_with_key(self, conn: Connection, queue: str, key: str) -> Job:
        row = await conn.fetchrow(
            f"SELECT {JOB_COLUMNS} FROM {self.t}jobs WHERE queue = $1 AND unique_key = $2"
            f" AND status IN {SQL.UNFINISHED}",
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
        rows = await self._change(
            f"UPDATE {self.t}jobs AS jobs SET status = {SQL.RUNNING}, attempts = attempts + 1,"
            " progress = NULL, lease_owner = $1, lease_token = $2, lease_expires_at = $3,"
            " started_at = $4, updated_at = $4"
            f" WHERE id IN (SELECT id FROM {self.t}jobs WHERE queue = $5"
            f"  AND status = {SQL.CLAIMABLE} ORDER BY priority DESC, id LIMIT $6"
            "  FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_JOBS_COLUMNS}, jobs.id AS h_job_id, jobs.queue AS h_queue,"
            f" {SQL.RUNNING}::text AS h_status, $4::float8 AS h_at, NULL::text AS h_message",
            [
                params.owner,
                params.token,
                params.lease_expires_at,
                params.now,
                params.queue,
                params.limit,
            ],
            order_by="priority DESC, id",  # as Python sorts them below (ids collate as bytes)
            durable=False,
        )
        jobs = sorted(map(row_to_job, rows), key=lambda j: (-j.priority, j.id))
        return jobs, self._transitions(rows)

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        if not finishes:
            return []
        # A run put back or retried while its cancellation was pending ends cancelled
        # instead.
        put_back = f"f.status IN {SQL.OVERRIDDEN_BY_CANCEL} AND jobs.status = {SQL.CANCELLING}"
        # A run put back unfinished (its worker stopping) was no attempt.
        requeued = f"f.status = {SQL.QUEUED} AND jobs.status <> {SQL.CANCELLING}"
        rows = await self._change(
            f"UPDATE {self.t}jobs AS jobs SET"
            f" status = CASE WHEN {put_back} THEN {SQL.CANCELLED} ELSE f.status END,"
            f" finished_at = CASE WHEN {put_back} THEN $1 ELSE f.finished_at END,"
            " result = f.result, error = f.error, traceback = f.traceback,"
            " progress = f.progress, scheduled_at = f.scheduled_at, updated_at = $1,"
            f" attempts = CASE WHEN {requeued} THEN greatest(jobs.attempts - 1, 0)"
            "  ELSE jobs.attempts END,"
            " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
            " FROM unnest($2::text[], $3::text[], $4::text[], $5::json[], $6::text[],"
            "  $7::text[], $8::json[], $9::float8[], $10::float8[], $11::text[])"
            "  WITH ORDINALITY AS f(id, token, status, result, error, traceback, progress,"
            "  finished_at, scheduled_at, message, ord)"
            " WHERE jobs.id = f.id AND jobs.lease_token = f.token"
            " RETURNING f.ord, jobs.id AS h_job_id, jobs.queue AS h_queue,"
            " jobs.status AS h_status, $1::float8 AS h_at,"
            f" CASE WHEN jobs.status = f.status THEN f.message ELSE {SQL.CANCELLED} END"
            "  AS h_message",
            [
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
                [f.message for f in finishes],
            ],
            order_by="ord",  # the callers' order
        )
        progress = {f.job_id: f.progress for f in finishes}
        return [replace(t, progress=progress[t.job_id]) for t in self._transitions(rows)]

    async def jobs_progress(self, writes: Sequence[ProgressWrite], now: float) -> None:
        if not writes:
            return
        # Notified like a transition, so that other runtimes relay it to their subscribers.
        await self.db.statement(
            f"WITH written AS (UPDATE {self.t}jobs AS jobs SET progress = f.progress,"
            " updated_at = $1"
            "  FROM unnest($2::text[], $3::text[], $4::json[]) AS f(id, token, progress)"
            "  WHERE jobs.id = f.id AND jobs.lease_token = f.token RETURNING 1)"
            " SELECT pg_notify($5, $6) WHERE EXISTS (SELECT 1 FROM written)",
            now,
            [w.job_id for w in writes],
            [w.token for w in writes],
            [_codec.encode(w.progress) for w in writes],
            self.db.channel,
            self._origin,
            durable=False,
        )
