"""The SQLite store's writes that keep leases: renew them (heartbeat), and clear them,
putting the jobs back (rescue of a lost worker's, release of a stopping one's, unclaim of
claims whose answer was lost), each job with its history row."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from ... import _codec
from ..._states import JobStatus
from .. import _rules as rules
from .._records import RescueParams, Transition
from ._file import SQLiteFile
from ._history import HistoryRow, append_history
from ._sql import ROWS_PER_STATEMENT, chunks


class SQLiteLeaseWrites:
    """Part of SQLiteWrites (a base class of it)."""

    file: SQLiteFile
    origin: str

    async def jobs_heartbeat(
        self, owner: str, job_ids: Collection[str], lease_expires_at: float
    ) -> set[str]:
        ids = list(job_ids)

        def renew(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for chunk in chunks(ids, ROWS_PER_STATEMENT):
                rows = conn.execute(
                    "UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ?"
                    f" AND lease_token IS NOT NULL AND id IN ({', '.join('?' * len(chunk))})"
                    " RETURNING id",
                    (lease_expires_at, owner, *chunk),
                ).fetchall()
                held |= {row[0] for row in rows}
            return held

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
        condition = " OR ".join(tests)
        if params.keep:
            condition = f"({condition}) AND id NOT IN (SELECT value FROM json_each(?))"
            args.append(_codec.encode(list(params.keep)).decode())
        return await self._put_back(
            condition, args, params.now, max_orphanings=params.max_orphanings
        )

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        return await self._put_back("lease_owner = ?", [owner], now, max_orphanings=None)

    async def jobs_unclaim(self, tokens: Sequence[str], now: float) -> list[Transition]:
        if not tokens:
            return []
        return await self._put_back(
            "lease_token IN (SELECT value FROM json_each(?))",
            [_codec.encode(list(tokens)).decode()],
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
            history: list[HistoryRow] = []
            for job_id, queue, status, orphanings in rows:
                new, error, message, lost = rules.put_back(
                    status, orphanings, max_orphanings, reason
                )
                ended = None if new is JobStatus.QUEUED else now
                # An unfinished run was no attempt, and its progress is no job's now.
                requeued = int(new is JobStatus.QUEUED)
                updates.append((new.value, error, ended, now, lost, requeued, requeued, job_id))
                history.append((job_id, queue, new, now, message))
            conn.executemany(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, updated_at = ?,"
                " orphanings = ?, attempts = max(attempts - ?, 0),"
                " progress = CASE WHEN ? THEN NULL ELSE progress END,"
                " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
                " WHERE id = ?",
                updates,
            )
            return append_history(conn, history, self.origin)

        return await self.file.write(put_back)
