"""Retention: deleting finished jobs once their status's retention period is over, in
batches of short transactions, at an interval that follows the shortest period; and
``purge``, the same deletion on demand (Engine.purge)."""

from __future__ import annotations

from .._clock import Clock
from .._errors import StoreError
from .._logging import get_logger
from .._states import JobStatus
from ..store import PurgeParams, Store

log = get_logger("conveyor.engine")

MAX_RETENTION_INTERVAL = 600.0  # seconds between applications of the retention periods, at most
MIN_RETENTION_INTERVAL = 1.0
RETENTION_BATCH = 250  # jobs deleted per transaction: short writes that enqueues slip between


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
        deleted = await store.writes.jobs_purge(params)
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
        await clock.sleep(interval)
        await apply_retention(store, retention, clock.now())
