"""Waiting for jobs: until one is terminal (``Runtime.wait``), until none is runnable
(``Runtime.drain``). Each subscribes to the bus before it looks at the store, so a change
between the look and the wait still wakes it: no poll, and no lost wake-up."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection

from ._bus import EventBus
from ._clock import Clock
from ._errors import EventStreamOverflow
from ._models import Job
from ._states import TERMINAL, JobStatus
from .store import Store

BUSY = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)


async def until_terminal(bus: EventBus, get: Callable[[str], Awaitable[Job]], job_id: str) -> Job:
    """The job once terminal (``get`` reads it; JobNotFound passes through). Callers
    bound the wait."""
    async with bus.subscribe(job_id=job_id, max_buffer=64) as stream:
        job = await get(job_id)
        while job.status not in TERMINAL:
            async for event in stream:
                if event.status in TERMINAL:
                    break
            job = await get(job_id)
    return job


async def until_idle(store: Store, bus: EventBus, clock: Clock, queues: Collection[str]) -> None:
    """Until no job of ``queues`` is queued, running or cancelling, and no scheduled one
    is due (jobs scheduled for later do not count). Callers bound the wait."""
    while True:
        async with bus.subscribe(max_buffer=1) as changes:
            counts = await store.reads.queue_counts()
            due = await store.reads.next_due()
            idle = not any(
                counts.get(name, {}).get(status, 0) for name in queues for status in BUSY
            )
            if idle and (due is None or due > clock.now()):
                return
            with contextlib.suppress(EventStreamOverflow, StopAsyncIteration):
                await changes.__anext__()
