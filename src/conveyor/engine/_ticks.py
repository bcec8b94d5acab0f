"""Periodic queues: one job per tick of the queue's schedule, with an id derived from
the tick so that racing processes, or a restart repeating a tick, store it once."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from .._clock import Clock
from .._errors import RuntimeClosed, StoreError
from .._ids import derived_id
from .._logging import get_logger
from .._models import Job
from .._periodic import PeriodicQueue
from .._states import JobStatus
from ..store import NewJob, Transition
from ._batcher import Batcher

log = get_logger("conveyor.engine")

TICK_TRIES = 3  # a periodic tick's enqueue is tried this often, a second apart


async def periodic_loop(
    inserter: Batcher[NewJob, Transition | Job], queue: PeriodicQueue, clock: Clock, tick: float
) -> None:
    """Enqueue one job per tick of the queue's schedule.

    Each tick's job has an id derived from the queue and the tick, so processes racing
    for the same tick, or a restart repeating one, store it once. Ticks missed while
    down are skipped, but for the latest ``catch_up`` of them, which start_workers
    enqueued already.
    """
    schedule = queue.schedule  # ``tick``, the first, is taken as the runtime starts
    while True:
        await clock.sleep(max(0.0, tick - clock.now()))
        await enqueue_ticks(inserter, queue, [tick], clock)
        tick = schedule.next_after(max(tick, clock.now()))


async def enqueue_ticks(
    inserter: Batcher[NewJob, Transition | Job],
    queue: PeriodicQueue,
    ticks: Sequence[float],
    clock: Clock,
) -> None:
    jobs = [
        NewJob(
            id=derived_id(round(tick * 1000), f"{queue.name}@{tick!r}"),
            queue=queue.name,
            status=JobStatus.QUEUED,
            payload=queue.payload,
            created_by="periodic",
            created_at=clock.now(),
            derived_id=True,
        )
        for tick in ticks
    ]
    for attempt in range(TICK_TRIES):
        try:
            await inserter.submit(jobs)
            return
        except RuntimeClosed:
            return  # the runtime is stopping: this tick belongs to the next start
        except StoreError as exc:
            log.warning("periodic %s: enqueue failed (try %d): %s", queue.name, attempt, exc)
            await anyio.sleep(1.0)
    log.error("periodic %s: ticks %s skipped", queue.name, ticks)
