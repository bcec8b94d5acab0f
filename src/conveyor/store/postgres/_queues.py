"""The PostgreSQL store's QueueSettings: paused queues, in a table every runtime of the
fleet reads when a change is notified (QUEUES_CHANGED on the schema's channel)."""

from __future__ import annotations

from typing import Final

from .._base import PausedQueue
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
