"""Writing runs' outcomes: the finish statement, on the store's own connections or in the
transaction a handler wrote in (``conveyor.transaction()``), so that a handler's writes
and its job's completion commit together or not at all."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

import anyio
import asyncpg
from asyncpg.transaction import Transaction
from msgspec.structs import replace

from ... import _codec
from ..._models import NO_PROGRESS
from ..._states import JobStatus
from .._records import Finish, Transition
from .._rules import SQL
from ._db import LINK_ERRORS, NOT_SENT, Connection, Pool
from ._history import HistoryWriter, transitions

_NOT_ENDED: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED})


def _json(values: list[bytes | None], text: bool) -> list[bytes | None] | list[str | None]:
    """JSON values as the connection takes them: bytes on the store's (its codec), text on
    a handler's (a plain asyncpg connection)."""
    return [None if v is None else v.decode() for v in values] if text else values


async def finish(
    history: HistoryWriter,
    finishes: Sequence[Finish],
    now: float,
    conn: Connection | None,
    *,
    own: bool = False,
) -> list[Transition]:
    """Write outcomes, fenced by lease token: on ``conn`` inside its transaction (a
    handler's, whose connection has no JSON codec: JSON goes as text; or, ``own``, one
    of the store's), else as a transaction of its own."""
    if not finishes:
        return []
    # A run put back or retried while its cancellation was pending ends cancelled instead.
    put_back = f"f.status IN {SQL.OVERRIDDEN_BY_CANCEL} AND jobs.status = {SQL.CANCELLING}"
    # A run put back unfinished (its worker stopping) was no attempt.
    requeued = f"f.status = {SQL.QUEUED} AND jobs.status <> {SQL.CANCELLING}"
    text = conn is not None and not own
    json = "text" if text else "json"
    results = _json([f.result for f in finishes], text)
    progress = _json(
        [None if f.progress is NO_PROGRESS else _codec.encode(f.progress) for f in finishes], text
    )
    rows = await history.change(
        f"UPDATE {history.t}jobs AS jobs SET"
        f" status = CASE WHEN {put_back} THEN {SQL.CANCELLED} ELSE f.status END,"
        f" finished_at = CASE WHEN {put_back} THEN $1 ELSE f.finished_at END,"
        " result = f.result::json, error = f.error, traceback = f.traceback,"
        " progress = f.progress::json, scheduled_at = f.scheduled_at, updated_at = $1,"
        f" attempts = CASE WHEN {requeued} THEN greatest(jobs.attempts - 1, 0)"
        "  ELSE jobs.attempts END,"
        " lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL"
        f" FROM unnest($2::text[], $3::text[], $4::text[], $5::{json}[], $6::text[],"
        f"  $7::text[], $8::{json}[], $9::float8[], $10::float8[], $11::text[])"
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
            results,
            [f.error for f in finishes],
            [f.traceback for f in finishes],
            progress,
            [None if f.status in _NOT_ENDED else now for f in finishes],
            [f.scheduled_at for f in finishes],
            [f.message for f in finishes],
        ],
        order_by="ord",  # the callers' order
        conn=conn,
    )
    by_job = {f.job_id: f.progress for f in finishes}
    return [replace(t, progress=by_job[t.job_id]) for t in transitions(rows)]


class PostgresOutcomeTransaction:
    """The OutcomeTransaction of PostgresStore: a connection of the store's handler pool
    (PostgresDB.handler_pool), in a transaction begun for one run."""

    def __init__(
        self, history: HistoryWriter, pool: Pool, conn: Connection, transaction: Transaction
    ) -> None:
        self._history = history
        self._pool = pool
        self._conn = conn
        self._transaction = transaction
        self._ended = False

    @classmethod
    async def begin(cls, history: HistoryWriter) -> PostgresOutcomeTransaction:
        db = history.db
        pool = await db.handler_pool()
        try:
            conn = await pool.acquire(timeout=db.command_timeout)
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            raise db.error(exc) from exc
        try:
            transaction = conn.transaction()
            await transaction.start()
            if db.pooled:  # behind a pooler the session is not ours (see PostgresDB)
                await conn.execute(db.local_settings(durable=True))
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await pool.release(conn)
            if isinstance(exc, (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS)):
                raise db.error(exc) from exc
            raise
        return cls(history, pool, conn, transaction)

    @property
    def connection(self) -> object:
        return self._conn

    async def commit(self, finish_: Finish, now: float) -> list[Transition]:
        db = self._history.db
        committing = False
        try:
            with anyio.CancelScope(shield=True):  # once sent, seen to its end
                written = await finish(self._history, [finish_], now, self._conn)
                if written:  # else the job was rescued meanwhile: the rescued run decides
                    committing = True
                    await self._transaction.commit()
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            raise db.error(exc, committing=committing) from exc
        finally:
            await self.rollback()  # what is left: nothing once committed
        if written:
            self._history.notify_soon()
        return written

    async def rollback(self) -> None:
        """Roll back what was not committed and give the connection back; no error
        leaves here (a connection gone took its transaction with it)."""
        if self._ended:
            return
        self._ended = True
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS):
                if self._conn.is_in_transaction():
                    await self._transaction.rollback()
            with contextlib.suppress(asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS):
                await self._pool.release(self._conn, timeout=self._history.db.command_timeout)
