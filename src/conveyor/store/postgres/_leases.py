"""The PostgreSQL store's writes that keep leases: renew them (heartbeat), and clear
them, putting the jobs back (rescue of a lost worker's, release of a stopping one's,
unclaim of claims whose answer was lost), each job with its history row."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from .. import _rules as rules
from .._records import RescueParams, Transition
from .._rules import SQL
from ._db import Connection, PostgresDB
from ._history import HistoryWriter
from ._history import transitions as history_transitions


class PostgresLeaseWrites:
    """Part of PostgresWrites (a base class of it)."""

    db: PostgresDB
    t: str  # the schema-qualified table prefix
    history: HistoryWriter

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
            changed = await self.history.change(
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
            return history_transitions(changed)

        return await self.history.write(put_back)
