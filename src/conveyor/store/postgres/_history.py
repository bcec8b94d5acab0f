"""How every PostgreSQL write appends history and notifies: the change, its history rows
and the NOTIFY in one statement (see change_statement), so a write is one round trip.

A history row's seq is its writing transaction's id and its place in the transaction:
``xid << ORDINAL_BITS | ordinal``. Nothing is shared between writers (no counter, no
lock); readers make the order safe instead, by reading only below the oldest transaction
still running (see the schema's docstring, migration 3)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final, TypeVar

import anyio
import msgspec

from ..._errors import StoreError
from ..._logging import get_logger
from ..._states import BY_VALUE, JobStatus
from .._records import Transition
from .._rules import SQL
from ._db import Connection, PostgresDB

T = TypeVar("T")
log = get_logger("conveyor.store")

ORDINAL_BITS: Final = 20  # history rows one transaction may write: 2**20 - 1
MAX_ROWS: Final = (1 << ORDINAL_BITS) - 1
# The first seq no transaction still running can write, in this statement's snapshot:
# every row below it is committed (and visible) or was rolled back.
HORIZON: Final = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {ORDINAL_BITS})"
# A notification's payload is the writer's origin, then, after a newline, the JSON list of
# the queues it queued jobs on (see notification and queues_of), so that the runtimes
# working them claim at once, without reading the history first. PostgreSQL refuses a
# payload of 8,000 bytes or more: a longer list is left out (the history read finds them).
MAX_QUEUE_LIST: Final = 4000  # bytes
MAX_QUEUED_NAMES: Final = 100  # queue names kept for the next notification


def notification(origin: str, queued: Collection[str]) -> str:
    """The payload of a notification: see MAX_QUEUE_LIST."""
    if not queued:
        return origin
    names = msgspec.json.encode(sorted(queued))
    return origin if len(names) >= MAX_QUEUE_LIST else f"{origin}\n{names.decode()}"


def queues_of(payload: str) -> tuple[str, list[str]]:
    """A notification's origin, and the queues it says jobs were queued on (none when
    the payload names none, or names them in a form this version does not read)."""
    origin, _, names = payload.partition("\n")
    if names:
        try:
            return origin, msgspec.json.decode(names, type=list[str])
        except msgspec.DecodeError:
            pass
    return origin, []


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
            # The payload as notification() makes it, the list left out when too long.
            f", queued AS (SELECT json_agg(DISTINCT h_queue ORDER BY h_queue)::text AS names"
            f"   FROM changed WHERE h_status = {SQL.QUEUED}),"
            f" note AS (SELECT pg_notify({channel}::text, {origin}::text || coalesce("
            f"   (SELECT E'\\n' || names FROM queued WHERE octet_length(names) < {MAX_QUEUE_LIST}),"
            "   '')) WHERE EXISTS (SELECT 1 FROM changed))"
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
    committed (notify_soon). ``origin`` marks this runtime's rows (set when the store
    opens)."""

    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."
        self.origin = ""
        self._notify_due = False
        self._queued: set[str] = set()  # queues jobs were queued on since the last NOTIFY
        # The notifier is an asyncio task of the store's own (asyncpg runs on asyncio
        # only): it outlives every write and every task group of the runtime's.
        self._notify_wake = asyncio.Event()
        self._notifier: asyncio.Task[None] | None = None
        self._stopping = False

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
        transaction (the caller notifies once it commits: see notify_soon), else as a
        transaction of its own, notified here. ``origin`` (the application's transaction,
        which commits out of this runtime's sight) marks the rows and NOTIFYs inside it."""
        if origin is not None:
            assert conn is not None
            sql = change_statement(self.t, change, len(args), order_by, notify=True)
            return await conn.fetch(sql, *args, origin, self.db.channel)
        sql = change_statement(self.t, change, len(args), order_by, notify=False)
        if conn is not None:
            fetched = await conn.fetch(sql, *args, self.origin)
            self._note_queued(fetched)  # rolled back after all: a claim that finds nothing
            return fetched
        rows = await self.db.statement(sql, *args, self.origin, durable=durable)
        if rows:
            self._note_queued(rows)
            self.notify_soon()
        return rows

    def _note_queued(self, rows: Sequence[Any]) -> None:
        queued, names = JobStatus.QUEUED.value, self._queued
        for row in rows:
            # Bounded while the NOTIFY cannot be sent; a list that misses some names is
            # still right: the history read, not the list, is what every runtime relies on.
            if row["h_status"] == queued and len(names) < MAX_QUEUED_NAMES:
                names.add(row["h_queue"])

    def notify_soon(self) -> None:
        """Tell the other runtimes that history was written: one NOTIFY in a short
        transaction of its own (``synchronous_commit = off``), sent by the notifier once
        the write committed; the write does not wait for it.

        Inside a write's transaction the NOTIFY would take PostgreSQL's one lock on the
        notification queue and hold it across that commit's log flush: every notifying
        commit of the fleet would wait for the one before (the lock waits the fleet
        benchmark measured). Writes that commit while one is being sent share the next.
        A NOTIFY that fails is logged, not raised (the write it follows did commit); the
        others hear of it with the next one, or their next look (PostgresCommits).
        """
        self._notify_due = True  # only ever set once the write committed
        self._notify_wake.set()

    def start(self) -> None:
        """Start the notifier (when the store opens), on the loop it opens in: a store
        closed may open again under another loop."""
        self._stopping = False
        self._notify_wake = asyncio.Event()
        self._notifier = asyncio.get_running_loop().create_task(
            self._notify_loop(), name="conveyor: notify"
        )

    async def stop(self) -> None:
        """Send what is due, then stop the notifier (when the store closes)."""
        notifier, self._notifier = self._notifier, None
        if notifier is None:
            return
        self._stopping = True
        self._notify_wake.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.db.command_timeout):
            await asyncio.shield(notifier)
        notifier.cancel()

    async def _notify_loop(self) -> None:
        while True:
            await self._notify_wake.wait()
            self._notify_wake.clear()
            if not self._queued:
                # News of no queued job (a claim, outcomes) lets what is ready run
                # first: the handler of a job just claimed starts before this NOTIFY is
                # sent (~0.2 ms sooner on an idle worker). Queued jobs are news the
                # other runtimes claim on: that goes at once.
                await asyncio.sleep(0)
            if self._notify_due:
                self._notify_due = False
                payload = notification(self.origin, self._queued)
                self._queued = set()
                try:
                    await self.db.statement(
                        "SELECT pg_notify($1, $2)", self.db.channel, payload, durable=False
                    )
                except StoreError as exc:
                    log.warning("notifying the other runtimes failed: %s", exc)
            if self._stopping:
                return

    async def write(self, body: Callable[[Connection], Awaitable[T]]) -> T:
        """A write transaction (PostgresDB.write), notified once it committed."""
        result = await self.db.write(body)
        self.notify_soon()
        return result
