"""Claimed jobs on their way from a pool's claim to its idle workers (QueuePool)."""

from __future__ import annotations

import asyncio
from collections import deque

from .._models import Job


class HandOff:
    """Claimed jobs on their way to idle workers.

    Bound: the claimer claims only as many jobs as there are free slots, so this holds at
    most ``worker_count`` items and needs no overflow policy. A worker that finds an item
    takes it without yielding; only an idle one waits, on a future of its own, so one
    item wakes one worker. Plain asyncio futures rather than anyio Events: this is the
    per-job hot path, an anyio Event costs several times more to make, and the runtime
    is asyncio-only anyway (aiosqlite). Waiting on a future stays cancellable by scopes.
    """

    __slots__ = ("_closed", "_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[tuple[Job, int, str]] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # its worker may have been cancelled while waiting
                waiter.set_result(None)
                return

    def put(self, item: tuple[Job, int, str]) -> None:
        self._items.append(item)
        self._wake_one()

    def discard(self, token: str) -> int:
        """Take out the items of the claim ``token`` names; how many there were."""
        kept = deque(item for item in self._items if item[2] != token)
        taken = len(self._items) - len(kept)
        self._items = kept
        return taken

    def close(self) -> None:
        self._closed = True
        while self._waiters:
            self._wake_one()

    async def get(self) -> tuple[Job, int, str] | None:
        """The next item, or None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return self._items.popleft()
