"""The SQLite file's connections: how each is configured, and how a write transaction
reaches the one thread its connection lives on.

A write transaction runs whole, in one hop to its connection's thread (see
SQLiteFile.write). aiosqlite has no public call for that: its private
``Connection._execute`` (queue a function on the connection's thread) and ``_conn``
(the sqlite3 connection) have existed since 2018, so where a release has them
(``AIOSQLITE_RUNS_FUNCTIONS``, probed at import, not pinned), writers are aiosqlite
connections; where one does not, writers are ThreadedConnections, a sqlite3 connection
on a thread of conveyor's own through public APIs only. CI runs the store's contract
suite both ways. Reads use aiosqlite's public API either way.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, Protocol, TypeVar, cast

import aiosqlite

T = TypeVar("T")

WAL_SIZE_LIMIT: Final = 64 << 20  # bytes of write-ahead log kept after a checkpoint
CACHED_STATEMENTS: Final = 256

AIOSQLITE_RUNS_FUNCTIONS: Final = callable(getattr(aiosqlite.Connection, "_execute", None))


def pragmas(*, busy_timeout: float, synchronous: str, query_only: bool) -> list[str]:
    """What every connection runs first (the journal mode is checked apart: see
    check_wal)."""
    found = [
        f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}",
        f"PRAGMA synchronous = {synchronous}",
        # The WAL is checkpointed every 1,000 pages (SQLite's default); this caps what
        # it keeps on disk after each checkpoint, so it never only grows.
        f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}",
    ]
    if query_only:
        found.append("PRAGMA query_only = 1")
    return found


def wal_refused(mode: object) -> str | None:
    """Why ``PRAGMA journal_mode = WAL``'s answer is not WAL, or None when it is."""
    got = None if mode is None else cast(tuple[object, ...], mode)[0]
    return None if str(got).lower() == "wal" else f"cannot use WAL journal mode (got {got})"


class Writer(Protocol):
    """A connection write transactions go through, one at a time."""

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        """Run ``fn`` with the sqlite3 connection, on the connection's own thread."""
        ...

    async def close(self) -> None: ...


class AiosqliteWriter:
    """An aiosqlite connection, reached through its private ``_execute`` and ``_conn``
    (see the module docstring)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._execute = cast(Callable[[Callable[[], T]], Awaitable[T]], conn._execute)
        self._raw: sqlite3.Connection = conn._conn

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        raw = self._raw
        return self._execute(lambda: fn(raw))

    async def close(self) -> None:
        await self.conn.close()


class ThreadedConnection:
    """A sqlite3 connection used only from one thread of its own (an executor of one
    worker), through public APIs: the writer where aiosqlite lacks ``_execute``."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-sqlite")
        self._path = path
        self._busy_timeout = busy_timeout
        self._raw: sqlite3.Connection | None = None

    async def connect(self) -> None:
        def connect() -> None:
            self._raw = sqlite3.connect(
                self._path,
                isolation_level=None,
                timeout=self._busy_timeout,
                cached_statements=CACHED_STATEMENTS,
                check_same_thread=False,  # made here, used only here: the executor's thread
            )

        await self._submit(connect)

    def _submit(self, fn: Callable[[], T]) -> Awaitable[T]:
        return asyncio.wrap_future(self._thread.submit(fn))

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        raw = self._raw
        if raw is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._submit(lambda: fn(raw))

    async def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            await self._submit(raw.close)
        self._thread.shutdown(wait=False)


async def open_writer(path: Path, *, busy_timeout: float, threaded: bool) -> Writer:
    """A writer on ``path``: aiosqlite's, or a ThreadedConnection (``threaded``)."""
    if threaded:
        own = ThreadedConnection(path, busy_timeout=busy_timeout)
        try:
            await own.connect()
        except BaseException:
            await own.close()
            raise
        return own
    conn = await open_aiosqlite(path, busy_timeout=busy_timeout)
    return AiosqliteWriter(conn)


async def open_aiosqlite(path: Path, *, busy_timeout: float) -> aiosqlite.Connection:
    return await aiosqlite.connect(
        path, isolation_level=None, timeout=busy_timeout, cached_statements=CACHED_STATEMENTS
    )
