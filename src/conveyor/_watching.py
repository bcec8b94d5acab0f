"""Waiting for and watching jobs: wait for one, drain the queues, live events and a job's
current state as an event. JobWatching is JobOperations (whose checks it uses) with
these; QueueControl, and so Runtime, builds on it. The waits themselves, which subscribe
before they look so that no wake-up is lost, are in _waiting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import anyio

from ._bus import DEFAULT_MAX_BUFFER, EventStream
from ._clock import LATEST, ManualClock
from ._errors import RuntimeClosed, ValidationError, WaitTimeout
from ._limits import name, optional_seconds, shown
from ._limits import statuses as check_statuses
from ._models import Event, Job
from ._operations import JobOperations
from ._states import JobStatus
from ._waiting import until_idle, until_terminal

CURRENT_READS: Final = 3  # reads of a job's history and row for current_event, at most


class JobWatching(JobOperations):
    """JobOperations, and waiting for and watching jobs."""

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:  # noqa: ASYNC109
        """Wait until the job reaches a terminal state and return it. WaitTimeout after
        ``timeout`` seconds (the job is unaffected)."""
        self._require_open()
        timeout = optional_seconds("timeout", timeout)
        name("job_id", job_id)
        try:
            with anyio.fail_after(timeout):
                return await until_terminal(self.bus, self._get, job_id)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id} did not finish within {timeout}s") from None

    async def drain(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        run_scheduled: bool = False,
    ) -> None:
        """Wait until no job of this runtime's queues is runnable: none queued, running
        or cancelling, and no scheduled one due. Jobs scheduled for later do not count.

        ``run_scheduled=True`` runs those too, without sleeping: each time nothing else
        is runnable, the runtime's clock (a ``conveyor.testing.ManualClock``; any other
        is refused) is moved to the earliest scheduled job, which then runs; so a retry's
        backoff, a ``delay`` or an ``at`` pass at once. It returns once no job is
        scheduled at all (a job that keeps scheduling another keeps it going until
        ``timeout``).

        For tests and scripts: enqueue, ``await rt.drain()``, then check the results.
        WaitTimeout after ``timeout`` seconds (real time).
        """
        self._require_open()
        timeout = optional_seconds("timeout", timeout)
        if not isinstance(run_scheduled, bool):
            raise ValidationError(
                f"run_scheduled must be True or False, not {shown(run_scheduled)}"
            )
        if not self.runs_workers:
            raise RuntimeClosed("drain() needs a runtime with workers")
        clock = self.clock
        if run_scheduled and not isinstance(clock, ManualClock):
            raise ValidationError(
                "drain(run_scheduled=True) moves the runtime's clock instead of sleeping:"
                " give the runtime clock=conveyor.testing.ManualClock()"
            )
        try:
            with anyio.fail_after(timeout):
                while True:
                    await until_idle(self.store, self.bus, clock, list(self.specs))
                    if not run_scheduled:
                        return
                    assert isinstance(clock, ManualClock)  # checked above
                    due = await self.store.reads.next_due()
                    if due is None:
                        return
                    clock.advance(max(0.0, min(due, LATEST) - clock.now()))
        except TimeoutError:
            raise WaitTimeout(f"jobs were still runnable after {timeout}s") from None

    def events(
        self,
        queue: str | None = None,
        job_id: str | None = None,
        *,
        statuses: Iterable[JobStatus] | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> EventStream:
        """Live ``queue.job.changed`` events from now on, optionally filtered by queue,
        job and status (a progress report's status is ``running``).

        ``async for event in rt.events(queue="exports"): ...``. With ``job_id``, the
        first event is the job's current state (so a loop waiting for a job that has
        already finished ends at once; JobNotFound if there is no such job), then its
        changes. See EventStream for the buffer bound and overflow policy.
        """
        self._require_open()
        if queue is not None:
            self._check_queue_name(queue)
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValidationError(f"max_buffer must be an int >= 1, not {shown(max_buffer)}")
        wanted = None if statuses is None else check_statuses("statuses", statuses)
        stream = self.bus.subscribe(
            queue=queue,
            job_id=None if job_id is None else name("job_id", job_id),
            statuses=wanted,
            max_buffer=max_buffer,
        )
        if job_id is not None:
            stream.first = lambda: self.current_event(job_id)
        return stream

    async def current_event(self, job_id: str) -> Event:
        """The job's current state as an event: its status and progress, with the seq
        of its latest transition (what ``events(job_id=...)`` yields first)."""
        self._require_open()
        # History first: should a transition fall between the reads, the seq is the
        # older one, so that transition is delivered after this (a repeat, never a gap).
        # A repeat with the status the event already shows would read as progress going
        # back (its event carries the progress of its time): read again, a few times.
        for _ in range(CURRENT_READS):
            history = await self.store.reads.job_history(job_id)
            job = await self._get(job_id)
            last = history[-1] if history else None
            if last is None or last.status is job.status:
                break
        return Event(
            seq=0 if last is None else last.seq,
            job_id=job.id,
            queue=job.queue,
            status=job.status,
            progress=self._engine.live_progress(job_id) or job.progress,
            at=job.updated_at,
            message=None if last is None else last.message,
        )
