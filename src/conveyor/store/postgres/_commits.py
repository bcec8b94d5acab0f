"""How a runtime on PostgreSQL hears of other runtimes' commits: every write of history
sends a NOTIFY carrying its writer's origin (see _writes), and one connection per
runtime LISTENs. A listener can be lost (a restart) or dropped silently (a partition):
then ``changed()`` answers True on every call, so the engine reads each poll, and it
reconnects the listener every RELISTEN_EVERY seconds until it is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from ..._errors import StoreError
from ._db import PostgresDB
from ._reads import PostgresReads

RELISTEN_EVERY: Final = 1.0  # seconds between attempts to reconnect a lost listener
LOOK_ANYWAY_EVERY: Final = 5.0  # seconds between reads of the history with no notification
CHECK_LISTENER_EVERY: Final = 1.0  # seconds between round trips on the listener (see
# PostgresDB.check_listener): a silently dropped listener is found within this


class PostgresCommits:
    """The store's CommitWatch on PostgreSQL. ``origin`` is this runtime's mark on its
    own writes, whose notifications it ignores (it publishes those itself)."""

    def __init__(self, db: PostgresDB, reads: PostgresReads) -> None:
        self.db = db
        self.reads = reads
        self.origin = ""
        self._changed = True
        self._wake: Callable[[], None] = lambda: None
        self._relisten_at = 0.0
        self._check_listener_at = 0.0
        self._look_anyway_at = 0.0

    def notified(self, origin: str) -> None:
        """A commit that wrote history, heard on the listener ("" when it was lost)."""
        if origin != self.origin:
            self._changed = True
            self._wake()

    def watch(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def changed(self) -> bool:
        if self.reads.held_back:
            return True  # rows wait for an older transaction: look every poll
        if time.monotonic() >= self._look_anyway_at:
            # Notifications follow their writes' commits and may be lost with a
            # connection in between (see PostgresWrites._notify): read at least this often.
            self._look_anyway_at = time.monotonic() + LOOK_ANYWAY_EVERY
            return True
        if self.db.listening and time.monotonic() >= self._check_listener_at:
            self._check_listener_at = time.monotonic() + CHECK_LISTENER_EVERY
            await self.db.check_listener()
        if not self.db.listening:
            # Notifications are lost until the listener is back: read on every call.
            if time.monotonic() >= self._relisten_at:
                self._relisten_at = time.monotonic() + RELISTEN_EVERY
                try:
                    await self.db.relisten()
                except StoreError:
                    pass  # the tail's read reports the outage; try again later
            return True
        changed, self._changed = self._changed, False
        return changed
