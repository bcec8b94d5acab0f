"""The engine's timed work that touches no running job: periodic ticks and retention.

Plain functions of the store (or the insert batcher) and a clock, started by
Engine.start_workers in the runtime's task group; ``purge`` also serves rt.purge().
"""

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
from ..store import NewJob, PurgeParams, Store, Transition
from ._batcher import Batcher

log = get_logger("conveyor.engine")

MAX_RETENTION_INTERVAL = 600.0  # seconds between applications of the retention periods, at most
MIN_RETENTION_INTERVAL = 1.0
RETENTION_BATCH = 250  # jobs deleted per transaction: short writes that enqueues slip between
TICK_TRIES = 3  # a periodic tick's enqueue is tried this often, a second apart


def retention_interval(retention: dict[JobStatus, float]) -> float:
    """How often to apply the retention periods: a tenth of the shortest, within 1 s and
    10 min. So the table holds at most about 1.1 times what the retention keeps, and each
    pass deletes a tenth of it, not a backlog of ten minutes all at once."""
    shortest = min(retention.values(), default=MAX_RETENTION_INTERVAL)
    return min(max(shortest / 10, MIN_RETENTION_INTERVAL), MAX_RETENTION_INTERVAL)


async def purge(
    store: Store,
    statuses: frozenset[JobStatus],
    finished_before: float,
    queue: str | None,
    *,
    batch: int = 1000,
) -> int:
    """Delete matching finished jobs, a batch per transaction so that no single write
    holds the database for long (other writers queue for the lock between batches)."""
    total = 0
    while True:
        params = PurgeParams(
            statuses=statuses, finished_before=finished_before, queue=queue, limit=batch
        )
        deleted = await store.jobs_purge(params)
        total += deleted
        if deleted < params.limit:
            return total


async def apply_retention(store: Store, retention: dict[JobStatus, float], now: float) -> None:
    """Delete the finished jobs older than their status's retention period."""
    try:
        for status, keep in retention.items():
            deleted = await purge(
                store, frozenset({status}), now - keep, None, batch=RETENTION_BATCH
            )
            if deleted:
                log.info("retention: deleted %d %s jobs", deleted, status.value)
    except StoreError as exc:
        log.warning("retention: deleting old jobs failed, will retry: %s", exc)


async def retention_loop(store: Store, retention: dict[JobStatus, float], clock: Clock) -> None:
    interval = retention_interval(retention)
    while True:
        await anyio.sleep(interval)
        await apply_retention(store, retention, clock.now())


async def periodic_loop(
    inserter: Batcher[NewJob, Transition | Job], queue: PeriodicQueue, clock: Clock
) -> None:
    """Enqueue one job per tick of the queue's schedule.

    Each tick's job has an id derived from the queue and the tick, so processes racing
    for the same tick, or a restart repeating one, store it once. Ticks missed while
    down are skipped, but for the latest ``catch_up`` of them, which start_workers
    enqueued already.
    """
    schedule = queue.schedule
    tick = schedule.next_after(clock.now())
    while True:
        await anyio.sleep(max(0.0, tick - clock.now()))
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
