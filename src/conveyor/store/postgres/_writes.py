"""The PostgreSQL store's writes: every change to jobs, from the hot path (insert, claim,
finish, progress) to promoting due jobs and what operators ask for (cancel, rerun,
purge). Keeping leases is in _leases.py, the bulk operations in _bulk.py: base classes
of the one StoreWrites here.

Each hot-path write is a single statement whatever the batch size (arrays, ``unnest``)
that makes its change, appends its history and notifies in one round trip (see
_history.change_statement): no BEGIN and COMMIT round trips, which had been most of an
idle runtime's enqueue-to-start latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from ... import _codec
from ..._errors import InvalidTransition, ValidationError
from ..._models import Job
from ..._states import TERMINAL, JobStatus
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
from ._app import in_transaction
from ._bulk import PostgresBulkWrites
from ._db import Connection, PostgresDB
from ._history import MAX_ROWS, HistoryWriter
from ._history import transitions as history_transitions
from ._leases import PostgresLeaseWrites
from ._outcome import PostgresOutcomeTransaction, finish
from ._reads import job_row, unfinished_with_key

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})
_JOBS_COLUMNS: Final = ", ".join(f"jobs.{c.strip()}" for c in JOB_COLUMNS.split(","))


def _array_literal(tags: list[str]) -> str:
    """Tags as the text of a PostgreSQL array: a text[][] cannot hold rows of different
    lengths, so each job's tags travel as one text, cast to text[] in the INSERT. Each
    tag is quoted (so a tag ``NULL`` stays text), which is safe as tags hold no quote
    nor backslash (_limits.label)."""
    return "{" + ",".join(f'"{tag}"' for tag in tags) + "}"


class PostgresWrites(PostgresBulkWrites, PostgresLeaseWrites):
    """The StoreWrites of PostgresStore. ``self.t`` is the schema-qualified table
    prefix; ``origin`` marks the history rows (set when the store opens)."""

    one_at_a_time = False  # a pool of connections: writes run side by side

    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."
        self.history = HistoryWriter(db)  # every change below goes through it

    @property
    def origin(self) -> str:
        return self.history.origin

    @origin.setter
    def origin(self, origin: str) -> None:
        self.history.origin = origin

    async def jobs_insert(
        self, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[Transition | Job]:
        if connection is not None:
            return await self._insert_in(jobs, in_transaction(connection))
        return await self._insert(jobs, None)

    async def jobs_insert_claiming(
        self,
        jobs: Sequence[NewJob],
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,  # never called here: the commit is the answer
    ) -> tuple[list[Transition | Job], list[Claimed]]:
        async def insert_and_claim(
            conn: Connection,
        ) -> tuple[list[Transition | Job], list[Claimed]]:
            inserted = await self._insert(jobs, conn, own=True)
            return inserted, [await self._claim(params, conn) for params in claims]

        return await self.history.write(insert_and_claim)

    async def _insert_in(self, jobs: Sequence[NewJob], conn: Connection) -> list[Transition | Job]:
        """Insert in the application's open transaction: the jobs exist if and when it
        commits. Its rows and notification carry this runtime's origin marked ``/tx``,
        so this runtime too hears of them from the listener once they are committed
        (its own writes it publishes as they commit; these commit out of its sight)."""
        try:
            return await self._insert(jobs, conn, own=False)
        except asyncpg.PostgresError as exc:
            raise self.db.error(exc) from exc

    async def _insert(
        self, jobs: Sequence[NewJob], conn: Connection | None, *, own: bool = True
    ) -> list[Transition | Job]:
        """Insert in a transaction of its own (``conn`` None), or on ``conn`` inside its
        transaction: one of this store's (``own``) or the application's."""
        if not jobs:
            return []
        if len(jobs) > MAX_ROWS:  # a transaction's history rows (see _history)
            raise ValidationError(
                f"at most {MAX_ROWS:,} jobs go in one commit on PostgreSQL, not {len(jobs):,}:"
                " enqueue them in several enqueue_many calls"
            )
        may_clash = any(j.unique_key is not None or j.derived_id for j in jobs)
        # The application's connection has none of the pools' codecs: JSON goes as text.
        payloads = "json" if own else "text"
        change = (
            f"INSERT INTO {self.t}jobs (id, queue, status, payload, priority, max_attempts,"
            " created_by, created_at, scheduled_at, updated_at, timeout, unique_key, meta,"
            " tags)"
            " SELECT id, queue, status, payload::json, priority, max_attempts, created_by,"
            "  created_at, scheduled_at, created_at, timeout, unique_key, meta::jsonb,"
            "  tags::text[]"
            f" FROM unnest($1::text[], $2::text[], $3::text[], $4::{payloads}[], $5::int4[],"
            "  $6::int8[], $7::text[], $8::float8[], $9::float8[], $10::float8[],"
            "  $11::text[], $12::text[], $13::text[]) AS r(id, queue, status, payload,"
            "  priority, max_attempts, created_by, created_at, scheduled_at, timeout,"
            "  unique_key, meta, tags)"
            + (" ON CONFLICT DO NOTHING" if may_clash else "")
            + " RETURNING id AS h_job_id, queue AS h_queue, status AS h_status,"
            " created_at AS h_at, NULL::text AS h_message"
        )
        args = [
            [j.id for j in jobs],
            [j.queue for j in jobs],
            [j.status.value for j in jobs],
            [j.payload for j in jobs] if own else [j.payload.decode() for j in jobs],
            [j.priority for j in jobs],
            [j.max_attempts for j in jobs],
            [j.created_by for j in jobs],
            [j.created_at for j in jobs],
            [j.scheduled_at for j in jobs],
            [j.timeout for j in jobs],
            [j.unique_key for j in jobs],
            [_codec.encode(j.meta).decode() if j.meta else None for j in jobs],
            [_array_literal(j.tags) if j.tags else None for j in jobs],
        ]
        order_by = "h_job_id"  # ids grow: the order they were made in
        origin = None if own else f"{self.origin}/tx"
        if not may_clash:
            rows = await self.history.change(
                change, args, order_by=order_by, conn=conn, origin=origin
            )
            by_id = {t.job_id: t for t in history_transitions(rows)}
            return [by_id[j.id] for j in jobs]

        async def insert(conn: Connection) -> list[Transition | Job]:
            rows = await self.history.change(
                change, args, order_by=order_by, conn=conn, origin=origin
            )
            transitions = history_transitions(rows)
            inserted = {t.job_id for t in transitions}
            kept_out_by = {
                j.id: await (
                    unfinished_with_key(conn, self.db, j.queue, j.unique_key)
                    if j.unique_key is not None
                    else job_row(conn, self.t, j.id, None, lock=False)
                )
                for j in jobs
                if j.id not in inserted
            }
            return rules.insert_outcomes(jobs, transitions, kept_out_by)

        return await (self.history.write(insert) if conn is None else insert(conn))

    async def jobs_claim(self, params: ClaimParams) -> Claimed:
        return await self._claim(params, None)

    async def _claim(self, params: ClaimParams, conn: Connection | None) -> Claimed:
        """Claim in a transaction of its own (``conn`` None) or on ``conn``, inside one."""
        rows = await self.history.change(
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
            conn=conn,
        )
        jobs = sorted(map(row_to_job, rows), key=lambda j: (-j.priority, j.id))
        return jobs, history_transitions(rows)

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        return await finish(self.history, finishes, now, None)

    async def jobs_finish_claiming(
        self,
        finishes: Sequence[Finish],
        now: float,
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,  # never called here: the commit is the answer
    ) -> tuple[list[Transition], list[Claimed]]:
        async def finish_and_claim(
            conn: Connection,
        ) -> tuple[list[Transition], list[Claimed]]:
            finished = await finish(self.history, finishes, now, conn, own=True)
            return finished, [await self._claim(params, conn) for params in claims]

        return await self.history.write(finish_and_claim)

    async def outcome_transaction(self) -> OutcomeTransaction:
        return await PostgresOutcomeTransaction.begin(self.history)

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
            self.origin,
            durable=False,
        )

    async def periodic_first_seen(self, queue: str, now: float) -> float:
        rows = await self.db.statement(
            f"WITH added AS (INSERT INTO {self.t}periodic (queue, first_seen) VALUES ($1, $2)"
            "  ON CONFLICT DO NOTHING RETURNING first_seen)"
            f" SELECT first_seen FROM added UNION ALL"
            f" SELECT first_seen FROM {self.t}periodic WHERE queue = $1",
            queue,
            now,
        )
        return float(rows[0][0])

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        rows = await self.history.change(
            f"UPDATE {self.t}jobs AS jobs SET status = {SQL.QUEUED}, updated_at = $1"
            f" WHERE id IN (SELECT id FROM {self.t}jobs WHERE status = {SQL.DUE}"
            "  AND scheduled_at <= $1 ORDER BY scheduled_at LIMIT $2"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING jobs.scheduled_at, jobs.id AS h_job_id, jobs.queue AS h_queue,"
            f" {SQL.QUEUED}::text AS h_status, $1::float8 AS h_at, 'due'::text AS h_message",
            [now, limit],
            order_by="scheduled_at, h_job_id",
        )
        return history_transitions(rows)

    # -- what operators ask for --------------------------------------------------------

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async def request_cancel(conn: Connection) -> tuple[Job, list[Transition]]:
            job = await job_row(conn, self.t, job_id, queue)
            outcome = rules.cancel_request(job.status)
            if outcome is None:
                return job, []  # already ending or ended: nothing to do
            new, message = outcome
            changed = await self.history.change(
                f"UPDATE {self.t}jobs SET status = $1, finished_at = $2, updated_at = $3"
                " WHERE id = $4 RETURNING id AS h_job_id, queue AS h_queue,"
                " status AS h_status, $3::float8 AS h_at, $5::text AS h_message",
                [new.value, now if new is JobStatus.CANCELLED else None, now, job_id, message],
                order_by="h_job_id",
                conn=conn,
            )
            return await job_row(conn, self.t, job_id, None), history_transitions(changed)

        return await self.history.write(request_cancel)

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async def rerun(conn: Connection) -> tuple[Job, list[Transition]]:
            job = await job_row(conn, self.t, job_id, None)
            refusal = rules.rerun_refusal(job_id, job.status)
            if refusal is not None:
                raise InvalidTransition(refusal)
            changed = await self.history.change(
                f"UPDATE {self.t}jobs SET status = {SQL.QUEUED}, attempts = 0, orphanings = 0,"
                " result = NULL, error = NULL, traceback = NULL, progress = NULL,"
                " started_at = NULL, scheduled_at = NULL, finished_at = NULL, updated_at = $1"
                " WHERE id = $2 RETURNING id AS h_job_id, queue AS h_queue,"
                " status AS h_status, $1::float8 AS h_at, $3::text AS h_message",
                [now, job_id, f"rerun by {by}" if by else "rerun"],
                order_by="h_job_id",
                conn=conn,
            )
            return await job_row(conn, self.t, job_id, None), history_transitions(changed)

        return await self.history.write(rerun)

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
