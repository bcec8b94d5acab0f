"""How every PostgreSQL write appends history and notifies: the change, its history rows
and the NOTIFY in one statement (see change_statement), so a write is one round trip.

A history row's seq is its writing transaction's id and its place in the transaction:
``xid << ORDINAL_BITS | ordinal``. Nothing is shared between writers (no counter, no
lock); readers make the order safe instead, by reading only below the oldest transaction
still running (see the schema's docstring, migration 3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import anyio

from ..._errors import StoreError
from ..._logging import get_logger
from ..._states import BY_VALUE
from .._base import Transition
from ._db import Connection, PostgresDB

T = TypeVar("T")
log = get_logger("conveyor.store")

ORDINAL_BITS: Final = 20  # history rows one transaction may write: 2**20 - 1
MAX_ROWS: Final = (1 << ORDINAL_BITS) - 1
# The first seq no transaction still running can write, in this statement's snapshot:
# every row below it is committed (and visible) or was rolled back.
HORIZON: Final = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {ORDINAL_BITS})"


def change_statement(t: str, change: str, args: int, order_by: str, *, notify: bool) -> str:
    """The statement that makes ``change``, appends its history and notifies.

    ``change`` is a data-modifying statement taking ``args`` parameters whose RETURNING
    has, per changed job, its history row as ``h_job_id, h_queue, h_status, h_at,
    h_message``; the rows take seqs in ``order_by`` order (columns of that RETURNING).
    The statement takes one more parameter, the writer's origin, and with ``notify`` a
    second, the channel it NOTIFYs; it returns the RETURNING rows, each with its
    ``h_seq``.

    The ordinals go on from the last one the transaction took (an application's
    transaction may enqueue many times: see ``connection=``), up to MAX_ROWS rows in a
    transaction. Nothing changed: no notification.
    """
    origin, channel = f"${args + 1}", f"${args + 2}"
    return (
        f"WITH changed AS ({change}),"
        f" mine AS (SELECT pg_current_xact_id()::text::bigint << {ORDINAL_BITS} AS low),"
        # The transaction's earlier rows (a range of the primary key: one index probe).
        " taken AS (SELECT coalesce(max(h.seq), mine.low) AS last FROM mine"
        f"   LEFT JOIN {t}job_history AS h ON h.seq > mine.low AND h.seq <= mine.low + {MAX_ROWS}"
        "   GROUP BY mine.low),"
        " numbered AS (SELECT changed.*, (SELECT last FROM taken)"
        f"   + row_number() OVER (ORDER BY {order_by}) AS h_seq FROM changed),"
        f" ins AS (INSERT INTO {t}job_history"
        "   (seq, job_id, queue, status, at, message, origin)"
        f"   SELECT h_seq, h_job_id, h_queue, h_status, h_at, h_message, {origin}::text"
        "   FROM numbered)"
        + (
            f", note AS (SELECT pg_notify({channel}::text, {origin}::text)"
            "   WHERE EXISTS (SELECT 1 FROM changed))"
            " SELECT numbered.*, (SELECT count(*) FROM note) AS h_notified FROM numbered"
            if notify
            else " SELECT numbered.* FROM numbered"
        )
    )


def transitions(rows: Sequence[Any]) -> list[Transition]:
    """The transitions of a change statement's rows, in seq order."""
    found = [
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
    found.sort(key=lambda t: t.seq)
    return found


class HistoryWriter:
    """The one way the PostgreSQL store's writes change jobs: each change with its history
    rows (change_statement), and the notification to the other runtimes once it has
    committed (notify). ``origin`` marks this runtime's rows (set when the store opens)."""

    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."
        self.origin = ""
        self._notify_due = False
        self._notifying = anyio.Lock()

    async def change(
        self,
        change: str,
        args: Sequence[Any],
        *,
        order_by: str,
        durable: bool = True,
        conn: Connection | None = None,
        origin: str | None = None,
    ) -> Sequence[Any]:
        """Make ``change`` with its history (see change_statement): on ``conn`` inside its
        transaction (the caller notifies once it commits: see notify), else as a
        transaction of its own, notified here. ``origin`` (the application's transaction,
        which commits out of this runtime's sight) marks the rows and NOTIFYs inside it."""
        if origin is not None:
            assert conn is not None
            sql = change_statement(self.t, change, len(args), order_by, notify=True)
            return await conn.fetch(sql, *args, origin, self.db.channel)
        sql = change_statement(self.t, change, len(args), order_by, notify=False)
        if conn is not None:
            return await conn.fetch(sql, *args, self.origin)
        rows = await self.db.statement(sql, *args, self.origin, durable=durable)
        if rows:
            await self.notify()
        return rows

    async def notify(self) -> None:
        """Tell the other runtimes that history was written: one NOTIFY in a short
        transaction of its own (``synchronous_commit = off``), after the write committed.

        Inside a write's transaction the NOTIFY would take PostgreSQL's one lock on the
        notification queue and hold it across that commit's log flush: every notifying
        commit of the fleet would wait for the one before (the lock waits the fleet
        benchmark measured). Writes that commit while one is being sent share the next.
        A NOTIFY that fails is logged, not raised (the write it follows did commit); the
        others hear of it with the next one, or their next look (PostgresCommits).
        """
        self._notify_due = True  # only ever set once the write committed
        async with self._notifying:
            if not self._notify_due:
                return  # a NOTIFY sent after this write committed covers it
            self._notify_due = False
            try:
                await self.db.statement(
                    "SELECT pg_notify($1, $2)", self.db.channel, self.origin, durable=False
                )
            except StoreError as exc:
                log.warning("notifying the other runtimes failed: %s", exc)

    async def write(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """A write transaction (PostgresDB.write), notified once it committed."""
        result = await self.db.write(body)
        await self.notify()
        return result
