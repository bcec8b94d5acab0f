"""Group commit: everything submitted while one write is in flight goes in the next one.

No timer and no batch-size wait: an idle batcher writes a lone item at once, and a busy
one writes bigger batches by itself, because items pile up during each write. This is
what lets durable writes cost one commit per batch instead of one per job.

One bad item never fails the good ones beside it. A write that fails for a passing
reason (StoreBusy, StoreUnavailable: the same write may succeed later) is retried whole;
any other failure means the store refused something in the batch, so the batch is
written again in parts (each submit() call on its own, each put() item on its own) and
only the part that fails again gets the error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from .._errors import ConveyorError, RuntimeClosed, StoreBusy, StoreError, StoreUnavailable
from .._limits import describe
from .._logging import get_logger
from .._primitives import new_event

T = TypeVar("T")
R = TypeVar("R")

log = get_logger("conveyor.engine")


_PASSING = (StoreBusy, StoreUnavailable)  # failures after which the same write may succeed


class _Batch(Generic[T, R]):
    __slots__ = ("done", "error", "errors", "items", "results", "spans")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.spans: list[tuple[int, int]] = []  # each submit() call's slice of items
        self.results: list[R] = []
        self.error: BaseException | None = None  # the whole batch failed
        self.errors: dict[int, BaseException] = {}  # by span start: that call failed alone
        self.done = new_event()


class Batcher(Generic[T, R]):
    """Collects items and writes them with ``flush(items) -> results`` (aligned).

    Two ways in: :meth:`submit` waits for the commit and gets its results or the error
    (all of its items written, or none); :meth:`put` hands an item over and returns at
    once, and a failed write of such items is retried every ``retry_delay`` seconds
    until it succeeds. A put() item that the store refuses on its own is handed to
    ``salvage(item, error)``, whose replacement is written instead (None: it is dropped,
    and logged).

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
        salvage: Callable[[T, BaseException], T | None] | None = None,
    ) -> None:
        self._flush = flush
        self._salvage = salvage
        self.name = name
        self._retry_delay = retry_delay
        self._max_backlog = max_backlog
        self._open: _Batch[T, R] = _Batch()
        self._detached: list[T] = []
        self._wake = anyio.Event()
        self._flushed = anyio.Event()
        self._busy = False
        self._retrying = False  # the last write failed for a passing reason
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
        batch.spans.append((start, len(batch.items)))
        self._wake.set()
        await batch.done.wait()
        error = batch.error or batch.errors.get(start)
        if error is not None:
            raise error
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
                self._wake = new_event()
                if await self._write_once():  # put() items wait for a passing failure
                    await anyio.sleep(self._retry_delay)
                    self._wake.set()
        finally:
            # Cancelled: whoever still waits learns the write did not happen.
            closed = RuntimeClosed(f"the {self.name} writer stopped before this write")
            self._open.error = closed
            self._open.done.set()
            self._flushed.set()

    async def _write_once(self) -> bool:
        """One write of everything waiting; True if put() items wait to be retried."""
        batch, self._open = self._open, _Batch()
        detached, self._detached = self._detached, []
        if not batch.items and not detached:
            return False
        self._busy = True
        self._retrying = False
        try:
            results = await self._flush(batch.items + detached)
        except _PASSING as exc:
            batch.error = exc
            if detached:
                log.warning("%s write failed, retrying %d items: %s", self.name, len(detached), exc)
                self._retry(detached)
        except Exception as exc:
            log.warning(
                "%s write of %d items refused (%s); writing them in parts",
                self.name,
                len(batch.items) + len(detached),
                describe(exc),
            )
            await self._write_in_parts(batch, detached)
        else:
            batch.results = results[: len(batch.items)]
        finally:
            self._busy = False
            batch.done.set()
            self._flushed.set()
            self._flushed = new_event()
        return self._retrying

    def _retry(self, detached: list[T]) -> None:
        self._detached[:0] = detached
        self._retrying = True

    async def _write_in_parts(self, batch: _Batch[T, R], detached: list[T]) -> None:
        results: list[R | None] = [None] * len(batch.items)
        for start, end in batch.spans:
            try:
                results[start:end] = await self._flush(batch.items[start:end])
            except _PASSING as exc:
                batch.errors[start] = exc
            except Exception as exc:
                batch.errors[start] = self._refused(exc)
        batch.results = results  # type: ignore[assignment]  # None only where errors say
        failed = [item for item in detached if not await self._write_alone(item)]
        if failed:
            self._retry(failed)

    async def _write_alone(self, item: T) -> bool:
        """Write one put() item, or its salvage if the store refuses it; False when the
        store is failing for a passing reason (retry it later)."""
        try:
            await self._flush([item])
            return True
        except _PASSING:
            return False
        except Exception as exc:
            error = self._refused(exc)
        replacement = None if self._salvage is None else self._salvage(item, error)
        if replacement is None:
            log.error("%s: dropped an item the store refused: %s", self.name, error)
            return True
        try:
            await self._flush([replacement])
        except _PASSING:
            self._retry([replacement])
        except Exception as exc:
            log.error("%s: dropped an item and its salvage, both refused: %s", self.name, exc)
        return True

    def _refused(self, exc: Exception) -> ConveyorError:
        """A refusal as the ConveyorError the caller gets: a StoreError as it is; anything
        else is conveyor's bug, logged once with its traceback."""
        if isinstance(exc, ConveyorError):
            return exc
        log.error("%s write failed", self.name, exc_info=exc)
        error = StoreError(f"the store refused this write: {describe(exc)}; nothing was changed")
        error.__cause__ = exc
        return error
