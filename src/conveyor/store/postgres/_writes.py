"""The PostgreSQL store's writes off the hot path: keeping leases (heartbeat, rescue,
release), promoting due jobs, and what operators ask for (cancel, rerun, purge); and
``_change``, the one way every write appends history and notifies. The hot path (insert,
claim, finish, progress) is in _store.py, on top of this class.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from ..._errors import InvalidTransition, JobNotFound
from ..._models import Job
from ..._states import BY_VALUE, TERMINAL, JobStatus
from .. import _rules as rules
from .._base import PurgeParams, RescueParams, Transition
from .._rows import JOB_COLUMNS, row_to_job
from .._rules import SQL
from ._db import Connection
from ._reads import PostgresReads


class PostgresWrites(PostgresReads):
    """The reads, the history appender every write uses, and the writes off the hot path."""

    async def _change(
        self,
        change: str,
        args: Sequence[Any],
        *,
        order_by: str,
        durable: bool = True,
        conn: Connection | None = None,
    ) -> Sequence[Any]:
        """Make ``change``, append its history and notify, in one statement: on ``conn``
        inside its transaction, else as a transaction of its own (one round trip).

        ``change`` is a data-modifying statement taking ``args`` whose RETURNING has,
        per changed job, its history row as ``h_job_id, h_queue, h_status, h_at,
        h_message``; the rows take seqs in ``order_by`` order (columns of that
        RETURNING). Returns the RETURNING rows, each with its ``h_seq``.

        Taking the seqs locks the counter row until the transaction ends, so seqs
        become visible in commit order (see the schema); it happens after the change,
        so keep ``_change`` a transaction's last write. Nothing changed: no seq taken,
        no notification.
        """
        origin, channel = f"${len(args) + 1}", f"${len(args) + 2}"
        sql = (
            f"WITH changed AS ({change}),"
            f" s AS (UPDATE {self.t}history_seq SET last = last + (SELECT count(*) FROM changed)"
            "   WHERE EXISTS (SELECT 1 FROM changed) RETURNING last),"
            " numbered AS (SELECT changed.*, (SELECT last FROM s) - count(*) OVER ()"
            f"   + row_number() OVER (ORDER BY {order_by}) AS h_seq FROM changed),"
            f" ins AS (INSERT INTO {self.t}job_history"
            "   (seq, job_id, queue, status, at, message, origin)"
            f"   SELECT h_seq, h_job_id, h_queue, h_status, h_at, h_message, {origin}::text"
            "   FROM numbered),"
            f" note AS (SELECT pg_notify({channel}::text, {origin}::text) FROM s)"
            " SELECT numbered.*, (SELECT count(*) FROM note) AS h_notified FROM numbered"
        )
        if conn is not None:
            return await conn.fetch(sql, *args, self._origin, self.db.channel)
        return await self.db.statement(sql, *args, self._origin, self.db.channel, durable=durable)

    @staticmethod
    def _transitions(rows: Sequence[Any]) -> list[Transition]:
        """The transitions of _change's rows, in seq order."""
        transitions = [
            Transition(
                seq=row["h_seq"],
                job_id=row["h_job_id"],
                queue=row["h_queue"],
                status=BY_VALUE[row["h_status"]],
                at=row["h_at"],
                message=row["h_message"],
            )
            for row in rows
        ]
        transitions.sort(key=lambda t: t.seq)
        return transitions

    # -- leases ------------------------------------------------------------------------

    async def jobs_heartbeat(
        self, owner: str, job_ids: Collection[str], lease_expires_at: float
    ) -> set[str]:
        rows = await self.db.statement(
            f"UPDATE {self.t}jobs SET lease_expires_at = $1"
            " WHERE lease_owner = $2 AND lease_token IS NOT NULL AND id = ANY($3::text[])"
            " RETURNING id",
            lease_expires_at,
            owner,
            list(job_ids),
            durable=False,
        )
        return {row[0] for row in rows}

    async def jobs_rescue(self, params: RescueParams) -> list[Transition]:
        if params.expired_before is None and not params.dead_owners:
            return []
        # Another runtime rescuing the same jobs, or their owner finishing them, holds
        # their rows: skip those rather than wait (whoever holds them decides).
        return await self._put_back(
            "(lease_expires_at < $1 OR lease_owner = ANY($2::text[]))"
            " AND NOT (id = ANY($3::text[])) FOR UPDATE SKIP LOCKED",
            [params.expired_before, list(params.dead_owners), list(params.keep)],
            params.now,
            max_orphanings=params.max_orphanings,
        )

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        return await self._put_back(
            "lease_owner = $1 FOR UPDATE", [owner], now, max_orphanings=None
        )

    async def jobs_unclaim(self, tokens: Sequence[str], now: float) -> list[Transition]:
        if not tokens:
            return []
        return await self._put_back(
            "lease_token = ANY($1::text[]) FOR UPDATE",
            [list(tokens)],
            now,
            max_orphanings=None,
            reason=rules.UNCLAIMED,
        )

    async def _put_back(
        self,
        condition: str,
        args: list[Any],
        now: float,
        *,
        max_orphanings: int | None,
        reason: str = "worker shut down",
    ) -> list[Transition]:
        """Clear the leases of jobs matching ``condition`` (see rules.put_back)."""

        async def put_back(conn: Connection) -> list[Transition]:
            rows = await conn.fetch(
                f"SELECT id, queue, status, orphanings FROM {self.t}jobs"
                f" WHERE lease_token IS NOT NULL AND {condition}",
                *args,
            )
            outcomes = [rules.put_back(r[2], r[3], max_orphanings, reason) for r in rows]
            changed = await self._change(
                f"UPDATE {self.t}jobs AS jobs SET status = u.status, error = u.error,"
                f" finished_at = CASE WHEN u.status = {SQL.QUEUED} THEN NULL ELSE $1::float8 END,"
                " updated_at = $1, orphanings = u.orphanings,"
                f" attempts = CASE WHEN u.status = {SQL.QUEUED} THEN greatest(jobs.attempts - 1, 0)"
                "  ELSE jobs.attempts END,"
                f" progress = CASE WHEN u.status = {SQL.QUEUED} THEN NULL ELSE jobs.progress END,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::int4[], $6::text[])"
                "  WITH ORDINALITY AS u(id, status, error, orphanings, message, ord)"
                " WHERE jobs.id = u.id"
                " RETURNING u.ord, jobs.id AS h_job_id, jobs.queue AS h_queue,"
                " u.status AS h_status, $1::float8 AS h_at, u.message AS h_message",
                [
                    now,
                    [r[0] for r in rows],
                    [o.status.value for o in outcomes],
                    [o.error for o in outcomes],
                    [o.orphanings for o in outcomes],
                    [o.message for o in outcomes],
                ],
                order_by="ord",
                conn=conn,
            )
            return self._transitions(changed)

        return await self.db.write(put_back)

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
        rows = await self._change(
            f"UPDATE {self.t}jobs AS jobs SET status = {SQL.QUEUED}, updated_at = $1"
            f" WHERE id IN (SELECT id FROM {self.t}jobs WHERE status = {SQL.DUE}"
            "  AND scheduled_at <= $1 ORDER BY scheduled_at LIMIT $2"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING jobs.scheduled_at, jobs.id AS h_job_id, jobs.queue AS h_queue,"
            f" {SQL.QUEUED}::text AS h_status, $1::float8 AS h_at, 'due'::text AS h_message",
            [now, limit],
            order_by="scheduled_at, h_job_id",
        )
        return self._transitions(rows)

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
            changed = await self._change(
                f"UPDATE {self.t}jobs SET status = $1, finished_at = $2, updated_at = $3"
                " WHERE id = $4 RETURNING id AS h_job_id, queue AS h_queue,"
                " status AS h_status, $3::float8 AS h_at, $5::text AS h_message",
                [new.value, now if new is JobStatus.CANCELLED else None, now, job_id, message],
                order_by="h_job_id",
                conn=conn,
            )
            return await self._locked_job(conn, job_id, None), self._transitions(changed)

        return await self.db.write(request_cancel)

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        async def rerun(conn: Connection) -> tuple[Job, list[Transition]]:
            job = await self._locked_job(conn, job_id, None)
            refusal = rules.rerun_refusal(job_id, job.status)
            if refusal is not None:
                raise InvalidTransition(refusal)
            changed = await self._change(
                f"UPDATE {self.t}jobs SET status = {SQL.QUEUED}, attempts = 0, orphanings = 0,"
                " result = NULL, error = NULL, traceback = NULL, progress = NULL,"
                " started_at = NULL, scheduled_at = NULL, finished_at = NULL, updated_at = $1"
                " WHERE id = $2 RETURNING id AS h_job_id, queue AS h_queue,"
                " status AS h_status, $1::float8 AS h_at, $3::text AS h_message",
                [now, job_id, f"rerun by {by}" if by else "rerun"],
                order_by="h_job_id",
                conn=conn,
            )
            return await self._locked_job(conn, job_id, None), self._transitions(changed)

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
