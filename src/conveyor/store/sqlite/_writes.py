"""The SQLite store's writes off the hot path: keeping leases (heartbeat, rescue,
release), promoting due jobs, and what operators ask for (cancel, rerun, purge).

Like every write, each is one transaction, a plain function of a sqlite3 connection run
whole on the connection's thread (see SQLiteFile.write). The hot path (insert, claim,
finish, progress) is in _store.py, on top of this class.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from ... import _codec
from ..._errors import InvalidTransition, JobNotFound
from ..._models import Job
from ..._states import TERMINAL, JobStatus
from .. import _rules as rules
from .._base import PurgeParams, RescueParams, Transition
from .._rows import JOB_COLUMNS, row_to_job
from .._rules import SQL
from ._reads import SQLiteReads
from ._sql import ROWS_PER_STATEMENT, chunks, values_list


class SQLiteWrites(SQLiteReads):
    """The reads, the history appender every write uses, and the writes off the hot path."""

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
            history: list[tuple[str, str, JobStatus, float, str | None]] = []
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
            return self._append_history(conn, history)

        return await self.file.write(put_back)

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
            outcome = rules.cancel_request(job.status)
            if outcome is None:
                return job, []  # already ending or ended: nothing to do
            new, message = outcome
            ended = now if new is JobStatus.CANCELLED else None
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
