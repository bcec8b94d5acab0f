"""The SQLite store's QueueSettings: paused queues, in a table of the file that every
process reads (once per poll interval: SQLite cannot notify)."""

from __future__ import annotations

import sqlite3

from .._base import PausedQueue
from ._file import SQLiteFile


class SQLiteQueues:
    def __init__(self, file: SQLiteFile) -> None:
        self.file = file

    async def paused(self) -> dict[str, PausedQueue]:
        rows = await self.file.read("SELECT queue, paused_at, paused_by FROM paused_queues")
        return {queue: PausedQueue(at, by) for queue, at, by in rows}

    async def set_paused(self, queue: str, paused: bool, by: str | None, now: float) -> None:
        def change(conn: sqlite3.Connection) -> None:
            if paused:
                conn.execute(
                    "INSERT INTO paused_queues (queue, paused_at, paused_by) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (queue, now, by),
                )
            else:
                conn.execute("DELETE FROM paused_queues WHERE queue = ?", (queue,))

        await self.file.write(change)
