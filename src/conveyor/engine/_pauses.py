"""Paused queues, fleet-wide: a paused queue's pools in every runtime claim nothing until
it is resumed (running jobs finish; enqueues are still taken). The state is the store's
(it survives restarts); each runtime keeps a copy, read when the store says it may have
changed: on PostgreSQL when a pause is notified, on SQLite once per poll interval."""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from .._errors import StoreError
from .._logging import get_logger
from ..store import PausedQueue, Store
from ._pool import QueuePool

log = get_logger("conveyor.engine")


class Pauses:
    """This runtime's copy of the paused queues, applied to its pools."""

    def __init__(self, store: Store, pools: Mapping[str, QueuePool], poll_interval: float):
        self.store = store
        self.pools = pools
        self.poll_interval = poll_interval
        self.paused: dict[str, PausedQueue] = {}

    async def load(self) -> None:
        """Read the paused queues now and apply them."""
        self.paused = await self.store.queues.paused()
        for name, pool in self.pools.items():
            pool.set_paused(name in self.paused)

    async def run(self) -> None:
        """Re-read whenever the store says a queue may have been paused or resumed, looking
        every poll interval (an in-memory check; a read only when it says so)."""
        while True:
            await anyio.sleep(self.poll_interval)
            if self.store.commits.queues_changed():
                try:
                    await self.load()
                except StoreError as exc:
                    log.warning("reading the paused queues failed, will retry: %s", exc)
