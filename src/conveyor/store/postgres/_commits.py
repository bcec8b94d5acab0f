"""How a runtime on PostgreSQL hears of other runtimes' commits: every write of history
sends a NOTIFY carrying its writer's origin (see _writes), and one connection per
runtime LISTENs. A listener can be lost (a restart) or dropped silently (a partition):
then ``changed()`` answers True on every call, so the engine reads each poll, and it
reconnects the listener every RELISTEN_EVERY seconds until it is back."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection
from typing import Final

import anyio
import asyncpg

from ..._errors import StoreError, StoreUnavailable
from ..._urls import without_password
from ._db import (
    CONNECT_TIMEOUT,
    LINK_ERRORS,
    LISTENER_ANSWER,
    NOT_SENT,
    NOTIFY_CHECK,
    POOLER_ADVICE,
    PostgresDB,
    detect_dead_peers,
)
from ._history import queues_of
from ._queues import QUEUES_CHANGED
from ._reads import PostgresReads

RELISTEN_EVERY: Final = 1.0  # seconds between attempts to reconnect a lost listener
LOOK_ANYWAY_EVERY: Final = 5.0  # seconds between reads of the history with no notification
CHECK_LISTENER_EVERY: Final = 1.0  # seconds between round trips on the listener (see
# check_listener): a silently dropped listener is found within this


class PostgresCommits:
    """The store's CommitWatch on PostgreSQL. ``origin`` is this runtime's mark on its
    own writes, whose notifications it ignores (it publishes those itself)."""

    # Positions order by transaction id, and a transaction may commit after a later one
    # (see _history): only the tail, reading below the snapshot horizon, knows the order.
    numbers_writes_in_commit_order = False

    def __init__(self, db: PostgresDB, reads: PostgresReads) -> None:
        self.db = db
        self.reads = reads
        self.origin = ""
        self._changed = True
        self._wake: Callable[[], None] = lambda: None
        self._queued: Callable[[Collection[str]], None] = lambda queues: None
        self._relisten_at = 0.0
        self._check_listener_at = 0.0
        self._look_anyway_at = 0.0
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._probe: tuple[str, anyio.Event] | None = None  # see _check_notifications
        self._queues_changed = True  # read the paused queues first thing
        self._queues_look_at = 0.0

    def notified(self, origin: str, queued: Collection[str] = ()) -> None:
        """A commit that wrote history, heard on the listener ("" when it was lost), and
        the queues it says it queued jobs on."""
        if origin != self.origin:
            self._changed = True
            if queued:  # first: the claim goes out before the tail's read, not behind it
                self._queued(queued)
            self._wake()

    def watch(self, wake: Callable[[], None], queued: Callable[[Collection[str]], None]) -> None:
        self._wake = wake
        self._queued = queued

    async def changed(self) -> bool:
        if self.reads.held_back:
            return True  # rows wait for an older transaction: look every poll
        if time.monotonic() >= self._look_anyway_at:
            # Notifications follow their writes' commits and may be lost with a
            # connection in between (see PostgresWrites._notify): read at least this often.
            self._look_anyway_at = time.monotonic() + LOOK_ANYWAY_EVERY
            return True
        if self.listening and time.monotonic() >= self._check_listener_at:
            self._check_listener_at = time.monotonic() + CHECK_LISTENER_EVERY
            await self.check_listener()
        if not self.listening:
            # Notifications are lost until the listener is back: read on every call.
            if time.monotonic() >= self._relisten_at:
                self._relisten_at = time.monotonic() + RELISTEN_EVERY
                try:
                    await self.relisten()
                except StoreError:
                    pass  # the tail's read reports the outage; try again later
            return True
        changed, self._changed = self._changed, False
        return changed

    # -- the listening connection ---------------------------------------------------------

    async def open(self) -> None:
        """Start listening, and check that notifications sent the way writes send them
        reach the listener (before the store creates anything: see PostgresStore.open)."""
        db = self.db
        try:
            with anyio.fail_after(db.command_timeout):
                await self._start_listening()
                await self._check_notifications()
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            raise db.error(exc) from exc

    def close(self) -> None:
        self._stop_listening()

    async def _start_listening(self) -> None:
        db = self.db
        listener = await asyncpg.connect(
            db.listen_dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=db.command_timeout,
            server_settings={"application_name": "conveyor-listen"},
        )
        detect_dead_peers(listener)
        try:
            await listener.add_listener(db.channel, self._heard)
        except BaseException:
            listener.terminate()  # connected but not listening: not a listener
            raise
        listener.add_termination_listener(self._lost)
        self._listener = listener

    def _heard(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if self._probe is not None and payload == self._probe[0]:
            self._probe[1].set()
            return
        if payload == QUEUES_CHANGED:
            self._queues_changed = True
            self._wake()
            return
        self.notified(*queues_of(str(payload)))

    def queues_changed(self) -> bool:
        now = time.monotonic()
        if now >= self._queues_look_at:  # a notification may have been lost: look anyway
            self._queues_look_at = now + LOOK_ANYWAY_EVERY
            self._queues_changed = True
        changed, self._queues_changed = self._queues_changed, False
        return changed or not self.listening

    async def _check_notifications(self) -> None:
        """Send a notification the way writes do and wait for the listener to hear it:
        through a transaction pooler without ``listen_url`` (or with one that names
        another database) it never arrives, and every other runtime would miss this
        one's commits for as long as it ran. Fail now, saying what to change."""
        db = self.db
        probe = self._probe = (f"probe:{secrets.token_hex(8)}", anyio.Event())
        try:
            await db.statement("SELECT pg_notify($1, $2)", db.channel, probe[0])
            with anyio.move_on_after(NOTIFY_CHECK):
                await probe[1].wait()
        finally:
            self._probe = None
        if not probe[1].is_set():
            listening = without_password(db.listen_dsn)
            raise StoreUnavailable(
                f"{db.where}: a notification sent through {without_password(db.dsn)}"
                f" did not reach the listening connection ({listening}) within"
                f" {NOTIFY_CHECK:g}s, so runtimes would not hear each other's commits. "
                + (
                    "Does listen_url name the same database, directly (not through the pooler)?"
                    if db.pooled
                    else f"Behind a transaction pooler such as PgBouncer, {POOLER_ADVICE}."
                )
            )

    def _lost(self, conn: object) -> None:
        # Commits may go unheard until the listener is back: wake the reader now (its
        # next changed() reconnects, and reads whatever was missed meanwhile).
        self._queues_changed = True
        self.notified("")

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.remove_termination_listener(self._lost)
            self._listener.terminate()
            self._listener = None

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def check_listener(self) -> None:
        """Ask the listening connection for a round trip: one the server dropped without
        this side hearing of it (during a partition, say) would otherwise stay silent
        for as long as it lives, and notifications with it. A listener that does not
        answer within LISTENER_ANSWER seconds is dropped, as if it was lost."""
        listener = self._listener
        if listener is None or listener.is_closed():
            return
        try:
            with anyio.fail_after(LISTENER_ANSWER):
                # The channel in a comment: pg_stat_activity shows what this connection is.
                await listener.execute(f"SELECT 1 -- LISTEN {self.db.channel}")
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS):
            self._stop_listening()
            self._lost(listener)

    async def relisten(self) -> None:
        """Reconnect the listening connection after it was lost (the server restarted)."""
        self._stop_listening()
        try:
            with anyio.fail_after(self.db.command_timeout):
                await self._start_listening()
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            raise self.db.error(exc) from exc
