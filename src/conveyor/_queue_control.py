"""What an operator does with whole queues and many jobs at once: pause and resume queues
for the fleet, see each one's state, cancel or rerun every job matching a filter.
Runtime is a QueueControl, which is a JobWatching and so a JobOperations (whose checks
it uses), in a module of its own to keep each to a size that reads at once."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta

from ._clock import to_datetime
from ._errors import ValidationError
from ._limits import MAX_THROUGHPUT_MINUTES, integer, name, optional_seconds, optional_text
from ._limits import statuses as check_statuses
from ._models import QueueState, QueueThroughput, Throughput, WorkerState
from ._states import JobStatus
from ._watching import JobWatching
from .engine import cancel_matching, is_lost, rerun_matching
from .store import JobMatch, PausedQueue
from .store._rules import CANCELLABLE, RERUN_FROM


class QueueControl(JobWatching):
    """JobWatching, and what is done with whole queues."""

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        """Pause ``queue`` in every process of the store: none starts its jobs once it
        has heard (at once here; a notification or a poll interval elsewhere), running
        jobs finish, and enqueues are still taken. Survives restarts until resumed;
        pausing a paused queue keeps its first pause."""
        self._require_open()
        name("queue", queue)  # every value checked before the queue is looked up,
        by = optional_text("by", by, self.limits.created_by_bytes)  # as a Client does
        self._check_queue_name(queue)
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

    async def workers(self) -> list[WorkerState]:
        """Every runtime running workers on this store (this one too, if it does), by
        id, with its heartbeat's age; a lost one until it is forgotten (after a day)."""
        self._require_open()
        now = self.clock.now()
        return [
            WorkerState(
                id=w.id,
                host=w.host,
                pid=w.pid,
                queues=w.queues,
                version=w.version,
                started_at=to_datetime(w.started_at),
                last_heartbeat=to_datetime(w.heartbeat_at),
                heartbeat_age=max(0.0, now - w.heartbeat_at),
                lost=is_lost(w, now),
            )
            for w in await self.store.workers.all()
        ]

    async def cancel_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """Cancel every job of ``queue`` (None: every queue) in ``statuses`` (None: every
        one a job can be cancelled from: scheduled, queued, running), created by
        ``created_by``, created more than ``older_than`` ago; how many. In transactions
        of 500 jobs, each job with its history row, as ``cancel`` would: waiting ones at
        once, running ones stopped wherever they run."""
        wanted = CANCELLABLE if statuses is None else statuses
        match = self._match(queue, wanted, CANCELLABLE, "cancelled", created_by, older_than)
        return await cancel_matching(self._engine, match)

    async def rerun_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
        by: str | None = None,
    ) -> int:
        """Rerun every ended job matching (``statuses`` default: failed) once, as ``rerun``
        would, in transactions of 500 jobs; how many."""
        self._require_open()
        by = optional_text("by", by, self.limits.created_by_bytes)
        wanted = (JobStatus.FAILED,) if statuses is None else statuses
        match = self._match(queue, wanted, RERUN_FROM, "rerun", created_by, older_than)
        return await rerun_matching(self._engine, match, by)

    async def count_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """How many jobs match, with the filters of ``cancel_matching`` (``statuses``
        None: every status): what a bulk operation given the same would take now."""
        wanted = frozenset(JobStatus) if statuses is None else statuses
        match = self._match(queue, wanted, frozenset(JobStatus), "counted", created_by, older_than)
        return await self.store.reads.jobs_count(match)

    async def throughput(self, minutes: int = 60, *, queue: str | None = None) -> Throughput:
        """Jobs completed and failed per minute over the last ``minutes`` (1 to
        MAX_THROUGHPUT_MINUTES), read from the store, of each queue (this runtime's, or
        for an observing runtime every queue with some), or of ``queue`` only."""
        self._require_open()
        integer("minutes", minutes, 1, MAX_THROUGHPUT_MINUTES)
        if queue is not None:
            self._check_queue_name(queue)
        now = self.clock.now()
        first = math.floor(now / 60) - minutes + 1
        rows = await self.store.reads.jobs_finished_per_minute(first * 60.0)
        if queue is not None:
            names = [queue]
        elif self.observes_all:
            names = sorted({row.queue for row in rows})
        else:
            names = list(self.specs)
        ended = (JobStatus.COMPLETED, JobStatus.FAILED)
        series = {n: {status: [0] * minutes for status in ended} for n in names}
        for row in rows:
            counts = series.get(row.queue)
            if counts is not None and 0 <= row.minute - first < minutes:  # a clock stepped back
                counts[row.status][row.minute - first] += row.count
        return Throughput(
            start=to_datetime(first * 60.0),
            as_of=to_datetime(now),
            minutes=minutes,
            queues={
                n: QueueThroughput(completed=c[JobStatus.COMPLETED], failed=c[JobStatus.FAILED])
                for n, c in series.items()
            },
        )

    def _match(
        self,
        queue: str | None,
        statuses: Iterable[JobStatus | str],
        eligible: frozenset[JobStatus],
        verb: str,
        created_by: str | None,
        older_than: float | timedelta | None,
    ) -> JobMatch:
        self._require_open()
        if queue is not None:
            name("queue", queue)
        wanted = check_statuses("statuses", statuses)
        if not wanted or not wanted <= eligible:
            allowed = ", ".join(sorted(eligible))
            raise ValidationError(f"statuses: only {allowed} jobs can be {verb}")
        age = optional_seconds("older_than", older_than)
        creator = optional_text("created_by", created_by, self.limits.created_by_bytes)
        if queue is not None:  # looked up once every value passed, as a Client does
            self._check_queue_name(queue)
        return JobMatch(
            statuses=wanted,
            queue=queue,
            created_by=creator,
            created_before=None if age is None else self.clock.now() - age,
        )

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
