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

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

import aiosqlite
import anyio
import anyio.to_thread

from ..._errors import StoreBusy, StoreError, StoreUnavailable
from .._base import counted
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


WAL_SIZE_LIMIT: Final = 64 << 20  # bytes of write-ahead log kept after a checkpoint


class SQLiteFile:
    """The connections to one SQLite file, its schema, and the only two ways in: a
    ``write()`` transaction and a ``read()``. sqlite3 errors leave here as StoreErrors."""

    def __init__(
        self, path: Path, *, synchronous: Literal["FULL", "NORMAL"], busy_timeout: float
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._fast_writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = anyio.Lock()
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

    async def _connect(
        self, *, query_only: bool, synchronous: str | None = None
    ) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, cached_statements=256
        )
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreUnavailable(f"{self.path}: cannot use WAL journal mode (got {mode})")
            await conn.execute(f"PRAGMA synchronous = {synchronous or self.synchronous}")
            # The WAL is checkpointed every 1,000 pages (SQLite's default); this caps
            # what it keeps on disk after each checkpoint, so it never only grows.
            await conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            if query_only:
                await conn.execute("PRAGMA query_only = 1")
        except BaseException:
            await conn.close()
            raise
        return conn

    def _probe(self) -> None:
        """Open and close the file once with plain sqlite3, so that a path that cannot be
        opened fails here: aiosqlite leaves a worker thread behind when its connect
        fails, which then calls back into an event loop that may be gone."""
        sqlite3.connect(self.path, timeout=self.busy_timeout).close()

    async def open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._probe)
            self._writer = await self._connect(query_only=False)
            await self._migrate()
            self._fast_writer = await self._connect(query_only=False, synchronous="NORMAL")
            self._reader = await self._connect(query_only=True)
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
                    await conn.close()
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

    async def write(self, body: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``body`` as one write transaction: BEGIN IMMEDIATE, body, COMMIT (ROLLBACK
        if it raises), serialised in-process. ``durable=False`` commits without an fsync
        of its own (see the module docstring).

        The whole transaction runs in one hop to the connection's thread. Awaiting each
        statement instead would hold SQLite's write lock across event-loop turns, and on
        a busy loop (hundreds of handlers finishing) most of the lock's time went to
        waiting for the loop, not to SQLite. aiosqlite has no public call for this; its
        ``_execute`` (queue a function on the connection's thread) has been stable since
        2018, and pyproject bounds the version.

        Shielded from cancellation: once begun, a transaction commits or rolls back before
        the caller sees a cancellation.
        """
        conn = self._writer if durable else self._fast_writer
        if conn is None:
            raise StoreError("store is not open")

        def transaction() -> T:
            raw = conn._conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                result = body(raw)
                raw.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may have ended it already; a failing ROLLBACK must not
                # hide the error that caused it.
                with contextlib.suppress(sqlite3.Error):
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                raise
            return result

        run_on_thread = cast(Callable[[Callable[[], T]], Awaitable[T]], conn._execute)
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                try:
                    result = await run_on_thread(transaction)
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
