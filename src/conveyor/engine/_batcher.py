"""Group commit: everything submitted while one write is in flight goes in the next one.

No timer and no batch-size wait: an idle batcher writes a lone item at once, and a busy
one writes bigger batches by itself, because items pile up during each write. This is
what lets durable writes cost one commit per batch instead of one per job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from .._errors import RuntimeClosed, StoreError
from .._logging import get_logger

T = TypeVar("T")
R = TypeVar("R")

log = get_logger("conveyor.engine")


class _Batch(Generic[T, R]):
    __slots__ = ("done", "error", "items", "results")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.results: list[R] = []
        self.error: BaseException | None = None
        self.done = anyio.Event()


class Batcher(Generic[T, R]):
    """Collects items and writes them with ``flush(items) -> results`` (aligned).

    Two ways in: :meth:`submit` waits for the commit and gets its results or the error;
    :meth:`put` hands an item over and returns at once, and a failed write of such items
    is retried every ``retry_delay`` seconds until it succeeds.

    Buffer bound: at most ``max_backlog`` items given with :meth:`put` wait unwritten;
    past that, :meth:`put` waits for the next write (backpressure, nothing is dropped).
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        *,
        name: str,
        retry_delay: float = 0.5,
        max_backlog: int = 10_000,
    ) -> None:
        self._flush = flush
        self.name = name
        self._retry_delay = retry_delay
        self._max_backlog = max_backlog
        self._open: _Batch[T, R] = _Batch()
        self._detached: list[T] = []
        self._wake = anyio.Event()
        self._flushed = anyio.Event()
        self._busy = False
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._open.items) + len(self._detached)

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Write ``items`` in the next commit and return their results."""
        if self._closed:
            raise RuntimeClosed(f"the {self.name} writer is closed")
        batch = self._open
        start = len(batch.items)
        batch.items.extend(items)
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[start : start + len(items)]

    async def put(self, item: T) -> None:
        """Hand ``item`` over for the next commit without waiting for it."""
        while len(self._detached) >= self._max_backlog:
            await self._flushed.wait()
        self._detached.append(item)
        self._wake.set()

    async def drain(self) -> None:
        """Return once everything handed over before this call is written."""
        while self.pending or self._busy:
            self._wake.set()
            await self._flushed.wait()

    def close(self) -> None:
        """Refuse new :meth:`submit` calls (items already in are still written)."""
        self._closed = True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self._write_once()
        finally:
            # Cancelled: whoever still waits learns the write did not happen.
            closed = RuntimeClosed(f"the {self.name} writer stopped before this write")
            self._open.error = closed
            self._open.done.set()
            self._flushed.set()

    async def _write_once(self) -> None:
        batch, self._open = self._open, _Batch()
        detached, self._detached = self._detached, []
        if not batch.items and not detached:
            return
        self._busy = True
        try:
            results = await self._flush(batch.items + detached)
        except StoreError as exc:
            batch.error = exc
            if detached:
                log.warning("%s write failed, retrying %d items: %s", self.name, len(detached), exc)
                self._detached[:0] = detached
                await anyio.sleep(self._retry_delay)
                self._wake.set()
        except Exception as exc:
            batch.error = exc
            if detached:
                log.exception("%s write failed; %d items dropped", self.name, len(detached))
        else:
            batch.results = results[: len(batch.items)]
        finally:
            self._busy = False
            batch.done.set()
            self._flushed.set()
            self._flushed = anyio.Event()
