"""What the PostgreSQL store's runtimes share beside jobs: the QueueSettings (paused
queues, which every runtime reads when a change is notified: QUEUES_CHANGED on the
schema's channel) and the WorkerRegistry (the runtimes running workers, heartbeating)."""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec.structs import replace

from .._records import PausedQueue, WorkerRecord
from ._db import PostgresDB

# The notification of a pause or resume; never an origin (those are owner ids).
QUEUES_CHANGED: Final = "queues changed"


class PostgresQueues:
    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."

    async def paused(self) -> dict[str, PausedQueue]:
        rows = await self.db.fetch(f"SELECT queue, paused_at, paused_by FROM {self.t}paused_queues")
        return {queue: PausedQueue(at, by) for queue, at, by in rows}

    async def set_paused(self, queue: str, paused: bool, by: str | None, now: float) -> None:
        # Rare, so the NOTIFY goes in the write's own statement (HistoryWriter.notify says
        # why the hot path's do not). A data-modifying WITH runs even unreferenced.
        if paused:
            change = (
                f"INSERT INTO {self.t}paused_queues (queue, paused_at, paused_by)"
                " VALUES ($3, $4, $5) ON CONFLICT DO NOTHING"
            )
            args: tuple[object, ...] = (queue, now, by)
        else:
            change, args = f"DELETE FROM {self.t}paused_queues WHERE queue = $3", (queue,)
        await self.db.statement(
            f"WITH changed AS ({change}) SELECT pg_notify($1, $2)",
            self.db.channel,
            QUEUES_CHANGED,
            *args,
        )


FORGET_AFTER = 86400.0  # seconds: a worker silent this long leaves the registry


class PostgresWorkers:
    """The PostgreSQL store's WorkerRegistry: a row per runtime, its record as JSON.
    Heartbeats need no durability (a lost one is the next one's): the fast pool's."""

    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."

    async def register(self, worker: WorkerRecord) -> None:
        await self.db.statement(
            f"WITH gone AS (DELETE FROM {self.t}workers WHERE heartbeat_at < $4)"
            f" INSERT INTO {self.t}workers (id, record, heartbeat_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET record = $2, heartbeat_at = $3",
            worker.id,
            msgspec.json.encode(worker),
            worker.heartbeat_at,
            worker.heartbeat_at - FORGET_AFTER,
            durable=False,
        )

    async def beat(self, worker_id: str, now: float) -> None:
        await self.db.statement(
            f"UPDATE {self.t}workers SET heartbeat_at = $1 WHERE id = $2",
            now,
            worker_id,
            durable=False,
        )

    async def deregister(self, worker_id: str) -> None:
        await self.db.statement(f"DELETE FROM {self.t}workers WHERE id = $1", worker_id)

    async def all(self) -> list[WorkerRecord]:
        rows = await self.db.fetch(f"SELECT record, heartbeat_at FROM {self.t}workers ORDER BY id")
        return [
            replace(msgspec.json.decode(record, type=WorkerRecord), heartbeat_at=at)
            for record, at in rows
        ]
