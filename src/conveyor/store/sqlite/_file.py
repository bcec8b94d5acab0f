"""The embedded default store: one SQLite file, through aiosqlite.

Three connections. Two writers, through which write transactions go one at a time
(``BEGIN IMMEDIATE``, so a transaction never has to upgrade its lock and fail): one with
``synchronous=FULL`` (by default) for writes that must survive power loss once
acknowledged — enqueues, outcomes, cancellations — and one with ``NORMAL`` for writes
whose loss is harmless: claims, lease renewals, progress. A lost claim only means the job
runs again, which at-least-once allows; and in WAL mode the next FULL commit fsyncs the
log, so it makes the earlier NORMAL commits durable too. That saves an fsync on the
hot path between enqueue and start. The third connection reads, so reads never queue
behind writes. WAL mode lets other processes read while one writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiosqlite
import anyio
import anyio.to_thread

from ..._errors import StoreBusy, StoreError, StoreUnavailable
from ..._primitives import new_scope
from .._base import counted
from . import _connections
from ._connections import Writer, open_aiosqlite, open_writer, pragmas, wal_refused
from ._schema import MIGRATIONS
from ._sql import statements

T = TypeVar("T")

_BUSY: Final = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_UNAVAILABLE: Final = {
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_CORRUPT,
}


class SQLiteFile:
    """The connections to one SQLite file, its schema, and the only two ways in: a
    ``write()`` transaction and a ``read()``. sqlite3 errors leave here as StoreErrors."""

    def __init__(
        self, path: Path, *, synchronous: Literal["FULL", "NORMAL"], busy_timeout: float
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._writer: Writer | None = None
        self._fast_writer: Writer | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = anyio.Lock(fast_acquire=True)  # no loop turn when free
        # See _connections: aiosqlite's writers where it can run a function on their thread.
        self.threaded_writes = not _connections.AIOSQLITE_RUNS_FUNCTIONS
        self.errors: dict[str, int] = {}  # what error() made, by kind (see Store.errors)

    def error(self, exc: sqlite3.Error) -> StoreError:
        return counted(self.errors, self._error(exc))

    def _error(self, exc: sqlite3.Error) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary in _BUSY:
            return StoreBusy(
                f"{self.path}: database is locked: another connection held the write lock"
                f" for more than {self.busy_timeout:g}s; nothing was changed"
            )
        if primary in _UNAVAILABLE:
            return StoreUnavailable(f"{self.path}: {exc}; nothing was changed")
        return StoreError(f"{self.path}: {exc}")

    async def _connect_reader(self) -> aiosqlite.Connection:
        conn = await open_aiosqlite(self.path, busy_timeout=self.busy_timeout)
        try:
            mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
            refused = wal_refused(mode)
            if refused:
                raise StoreUnavailable(f"{self.path}: {refused}")
            for pragma in pragmas(
                busy_timeout=self.busy_timeout, synchronous=self.synchronous, query_only=True
            ):
                await conn.execute(pragma)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _connect_writer(self, synchronous: str) -> Writer:
        writer = await open_writer(
            self.path, busy_timeout=self.busy_timeout, threaded=self.threaded_writes
        )

        def configure(conn: sqlite3.Connection) -> str | None:
            refused = wal_refused(conn.execute("PRAGMA journal_mode = WAL").fetchone())
            if refused is None:
                for pragma in pragmas(
                    busy_timeout=self.busy_timeout, synchronous=synchronous, query_only=False
                ):
                    conn.execute(pragma)
            return refused

        try:
            refused = await writer.run(configure)
            if refused:
                raise StoreUnavailable(f"{self.path}: {refused}")
        except BaseException:
            await writer.close()
            raise
        return writer

    def _probe(self) -> None:
        """Open and close the file once with plain sqlite3, so that a path that cannot be
        opened fails here: aiosqlite leaves a worker thread behind when its connect
        fails, which then calls back into an event loop that may be gone."""
        sqlite3.connect(self.path, timeout=self.busy_timeout).close()

    async def open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._probe)
            self._writer = await self._connect_writer(self.synchronous)
            await self._migrate()
            self._fast_writer = await self._connect_writer("NORMAL")
            self._reader = await self._connect_reader()
        except sqlite3.Error as exc:
            await self.close()
            raise self.error(exc) from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for conn in (self._reader, self._fast_writer, self._writer):
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()  # an aiosqlite connection or a Writer
        self._reader = self._fast_writer = self._writer = None

    async def _migrate(self) -> None:
        def migrate(conn: sqlite3.Connection) -> None:
            row = conn.execute("PRAGMA user_version").fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"{self.path}: schema version {version} is newer than this conveyor"
                    f" understands ({len(MIGRATIONS)}); upgrade conveyor"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            # Written even when unchanged: a file we cannot write fails here, at start,
            # not at the first enqueue.
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

        await self.write(migrate)

    async def write(
        self,
        body: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        before_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``body`` as one write transaction: BEGIN IMMEDIATE, body, COMMIT (ROLLBACK
        if it raises), serialised in-process. ``durable=False`` commits without an fsync
        of its own (see the module docstring). ``before_commit`` is called on the event
        loop with the body's result as the COMMIT begins (so the loop works while the
        commit's fsync is made), before this returns it or raises the COMMIT's error.

        The whole transaction runs in one hop to the connection's thread (see
        _connections). Awaiting each statement instead would hold SQLite's write lock
        across event-loop turns, and on a busy loop (hundreds of handlers finishing) most
        of the lock's time went to waiting for the loop, not to SQLite.

        Shielded from cancellation: once begun, a transaction commits or rolls back before
        the caller sees a cancellation.
        """
        conn = self._writer if durable else self._fast_writer
        if conn is None:
            raise StoreError("store is not open")

        loop = asyncio.get_running_loop()

        def transaction(raw: sqlite3.Connection) -> T:
            raw.execute("BEGIN IMMEDIATE")
            try:
                result = body(raw)
                if before_commit is not None:  # ahead of the write's own answer, in order
                    loop.call_soon_threadsafe(before_commit, result)
                raw.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may have ended it already; a failing ROLLBACK must not
                # hide the error that caused it.
                with contextlib.suppress(sqlite3.Error):
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                raise
            return result

        with new_scope(shield=True):
            async with self._write_lock:
                try:
                    result = await conn.run(transaction)
                except sqlite3.Error as exc:
                    raise self.error(exc) from exc
        return result

    async def read(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Any]:
        conn = self._reader
        if conn is None:
            raise StoreError("store is not open")
        try:
            return await conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
