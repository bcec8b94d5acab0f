"""Progress of jobs that other processes run, relayed to this process's subscribers.

A runtime publishes its own handlers' reports as events at once, but reports never cross
processes as events: each runtime writes its reports to the store, coalesced (every
``progress_interval``). So a process that watches jobs it does not run (``conveyor
serve``, a dashboard beside a worker fleet) reads them back: after the store changed,
at most once per ``progress_interval``, it reads the stored progress of every job other
owners run (running jobs only, through an index) and publishes those that moved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .._bus import EventBus
from .._clock import Clock, to_datetime
from .._models import Event, Progress
from .._states import JobStatus
from ..store import Store


def progress_event(seq: int, job_id: str, queue: str, progress: Progress, at: float) -> Event:
    """The event of a progress report: status running, the seq of the job's latest
    transition (see docs/protocol.md)."""
    return Event(
        seq=seq,
        job_id=job_id,
        queue=queue,
        status=JobStatus.RUNNING,
        progress=progress,
        at=to_datetime(at),
    )


class ProgressRelay:
    """Reads other owners' stored progress and publishes what moved.

    Memory: the last relayed progress per job other owners run, replaced by the running
    set at each read, so it is bounded by the fleet's concurrency.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        *,
        owner: str,
        interval: float,
        published_until: Callable[[], int],
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.owner = owner
        self.interval = interval
        self._published_until = published_until  # the seq this process's events reached
        self._last: dict[str, Progress | None] = {}
        self._due = False
        self._next_at = 0.0

    def store_changed(self) -> None:
        """Another process wrote something: maybe progress. Read at the next chance."""
        self._due = True

    def wait(self) -> float:
        """Seconds until a due read may run (infinite when none is due)."""
        if not self._due:
            return math.inf
        return max(0.0, self._next_at - time.monotonic())

    async def relay_if_due(self) -> None:
        if not self._due or time.monotonic() < self._next_at:
            return
        if not self.bus.has_subscribers:
            self._due = False
            self._last.clear()  # nobody listens: what they saw does not matter
            return
        self._next_at = time.monotonic() + self.interval
        rows = await self.store.reads.jobs_running_progress(self.owner)  # fails: due still
        self._due = False
        published_until = self._published_until()
        last, self._last = self._last, {}
        events: list[Event] = []
        at = self.clock.now()
        for row in rows:
            if row.seq > published_until:
                continue  # its latest transition is not out yet: a report must not overtake it
            self._last[row.job_id] = row.progress
            if row.job_id in last and last[row.job_id] == row.progress:
                continue
            if row.progress is not None and self.bus.wants(row.job_id):
                events.append(progress_event(row.seq, row.job_id, row.queue, row.progress, at))
        self.bus.publish_all(events, is_progress=True)
