"""What the SQLite store's processes share beside jobs: the QueueSettings (paused
queues, which every process reads once per poll interval: SQLite cannot notify) and the
WorkerRegistry (the processes running workers, heartbeating)."""

from __future__ import annotations

import sqlite3

import msgspec
from msgspec.structs import replace

from .._records import PausedQueue, WorkerRecord
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


FORGET_AFTER = 86400.0  # seconds: a worker silent this long leaves the registry


class SQLiteWorkers:
    """The SQLite store's WorkerRegistry: a row per worker process, its record as JSON."""

    def __init__(self, file: SQLiteFile) -> None:
        self.file = file

    async def register(self, worker: WorkerRecord) -> None:
        record = msgspec.json.encode(worker).decode()

        def register(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM workers WHERE heartbeat_at < ?",
                (worker.heartbeat_at - FORGET_AFTER,),
            )
            conn.execute(
                "INSERT OR REPLACE INTO workers (id, record, heartbeat_at) VALUES (?, ?, ?)",
                (worker.id, record, worker.heartbeat_at),
            )

        await self.file.write(register, durable=False)

    async def beat(self, worker_id: str, now: float) -> None:
        def beat(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id))

        await self.file.write(beat, durable=False)

    async def deregister(self, worker_id: str) -> None:
        def deregister(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

        await self.file.write(deregister, durable=False)

    async def all(self) -> list[WorkerRecord]:
        rows = await self.file.read("SELECT record, heartbeat_at FROM workers ORDER BY id")
        return [
            replace(msgspec.json.decode(record, type=WorkerRecord), heartbeat_at=at)
            for record, at in rows
        ]
