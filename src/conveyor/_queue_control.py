"""What an operator does with whole queues: pause and resume them for the fleet, and see
each one's state. Runtime is a QueueControl, which is a JobOperations (whose checks it
uses), in a module of its own to keep each to a size that reads at once."""

from __future__ import annotations

from ._clock import to_datetime
from ._limits import optional_text
from ._models import QueueState
from ._operations import JobOperations
from ._states import JobStatus
from .store import PausedQueue


class QueueControl(JobOperations):
    """JobOperations, and what is done with whole queues."""

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        """Pause ``queue`` in every process of the store: none starts its jobs once it
        has heard (at once here; a notification or a poll interval elsewhere), running
        jobs finish, and enqueues are still taken. Survives restarts until resumed;
        pausing a paused queue keeps its first pause."""
        self._require_open()
        self._check_queue_name(queue)
        by = optional_text("by", by, self.limits.created_by_bytes)
        await self._engine.set_paused(queue, True, by)
        return await self._queue_state(queue)

    async def resume(self, queue: str) -> QueueState:
        """Undo :meth:`pause`: every process starts the queue's jobs again."""
        self._require_open()
        self._check_queue_name(queue)
        await self._engine.set_paused(queue, False, None)
        return await self._queue_state(queue)

    async def queue_states(self) -> list[QueueState]:
        """Each queue's state: this runtime's queues, or for an observing runtime every
        queue with jobs or paused, by name."""
        self._require_open()
        counts = await self.queue_counts()
        paused = await self.store.queues.paused()
        names = sorted(set(counts) | set(paused)) if self.observes_all else list(self.specs)
        return [_state(name, paused.get(name), counts.get(name, {})) for name in names]

    async def _queue_state(self, queue: str) -> QueueState:
        counts = await self.queue_counts()
        paused = await self.store.queues.paused()
        return _state(queue, paused.get(queue), counts.get(queue, {}))


def _state(name: str, paused: PausedQueue | None, counts: dict[JobStatus, int]) -> QueueState:
    full = {status: counts.get(status, 0) for status in JobStatus}
    if paused is None:
        return QueueState(name=name, counts=full)
    return QueueState(
        name=name, paused=True, paused_at=to_datetime(paused.at), paused_by=paused.by, counts=full
    )
