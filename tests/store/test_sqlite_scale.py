"""The SQLite store's cost stays flat as finished jobs pile up (benchmarks/scale.py
measures it at a million): the hot path's writes, a retention pass, the reads an operator
pages through, on a store retaining 20 times more finished jobs, do the same work.

Work is counted in SQLite's virtual-machine instructions (a progress handler on every
connection of the store, called at each one): a statement that scans shows work in
proportion to the rows it reads, where an index search does the same whatever the
table holds. Deterministic, where timings at this size would be noise."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import JobStatus, SQLiteStore
from conveyor._ids import IdGenerator
from conveyor._models import NO_PROGRESS
from conveyor.engine._retention import apply_retention
from conveyor.store import ClaimParams, Finish, JobMatch, ListParams, NewJob, PurgeParams

pytestmark = pytest.mark.anyio

SMALL, LARGE = 100, 2_000  # finished jobs retained
FRESH = 50  # jobs each measured action takes
AROUND = 5  # failed, running and queued jobs beside the completed ones, in either store
DAY = 86_400.0
RETENTION = {  # Runtime's defaults
    JobStatus.COMPLETED: 7 * DAY,
    JobStatus.CANCELLED: 7 * DAY,
    JobStatus.FAILED: 30 * DAY,
}
ids = IdGenerator()
FAILED, RUNNING = JobStatus.FAILED, JobStatus.RUNNING
UNFINISHED = frozenset([JobStatus.QUEUED, RUNNING, JobStatus.SCHEDULED])


async def insert(store: SQLiteStore, n: int, at: float) -> None:
    await store.writes.jobs_insert(
        [
            NewJob(id=ids.new(), queue="q", status=JobStatus.QUEUED, payload=b"{}", created_at=at)
            for _ in range(n)
        ]
    )


async def claim(store: SQLiteStore, n: int, at: float) -> list[str]:
    params = ClaimParams(queue="q", limit=n, owner="o", token="t", now=at, lease_expires_at=at + 30)
    jobs, _ = await store.writes.jobs_claim(params)
    assert len(jobs) == n
    return [job.id for job in jobs]


async def finish(store: SQLiteStore, job_ids: list[str], at: float) -> None:
    done = [Finish.completed(job_id, "t", NO_PROGRESS, b"null") for job_id in job_ids]
    assert len(await store.writes.jobs_finish(done, at)) == len(job_ids)


async def fail(store: SQLiteStore, job_ids: list[str], at: float) -> None:
    failed = [Finish.failed(job_id, "t", NO_PROGRESS, "boom") for job_id in job_ids]
    assert len(await store.writes.jobs_finish(failed, at)) == len(job_ids)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[dict[int, SQLiteStore]]:
    """A store retaining SMALL and one retaining LARGE completed jobs, finished a day
    ago (within retention), written through the store's own write path."""
    opened: dict[int, SQLiteStore] = {}
    then = time.time() - DAY
    try:
        for size in (SMALL, LARGE):
            store = opened[size] = SQLiteStore(tmp_path / f"{size}.db")
            await store.open("me")
            await insert(store, size, then)
            await finish(store, await claim(store, size, then), then)
            await insert(store, AROUND, then)
            await fail(store, await claim(store, AROUND, then), then)
            await insert(store, 2 * AROUND, then)
            await claim(store, AROUND, then)  # running; the rest stay queued
        yield opened
    finally:
        for store in opened.values():
            await store.close()


async def work(store: SQLiteStore, action: Callable[[], Awaitable[object]]) -> int:
    """The VM instructions ``action`` costs, counted on every connection of ``store``."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0  # go on

    def counting(handler: Callable[[], int] | None) -> Callable[[Any], None]:
        return lambda conn: conn.set_progress_handler(handler, 1)

    reader = store.file._reader
    assert reader is not None
    for durable in (True, False):
        await store.file.write(counting(tick), durable=durable)
    await reader.set_progress_handler(tick, 1)
    count = 0
    try:
        await action()
    finally:
        found = count
        for durable in (True, False):
            await store.file.write(counting(None), durable=durable)
        await reader.set_progress_handler(None, 1)  # type: ignore[arg-type]
    return found


async def hot_path(store: SQLiteStore) -> dict[str, int]:
    now = time.time()
    claimed: list[str] = []

    async def claiming() -> None:
        claimed.extend(await claim(store, FRESH, now))

    return {
        "insert": await work(store, lambda: insert(store, FRESH, now)),
        "claim": await work(store, claiming),
        "finish": await work(store, lambda: finish(store, claimed, now)),
    }


async def operators(store: SQLiteStore) -> dict[str, int]:
    now = time.time()
    reads = store.reads
    one_queue = PurgeParams(
        statuses=frozenset(RETENTION), finished_before=now - 7 * DAY, queue="q", limit=250
    )
    return {
        "retention": await work(store, lambda: apply_retention(store, RETENTION, now)),
        "purge one queue": await work(store, lambda: store.writes.jobs_purge(one_queue)),
        "throughput": await work(store, lambda: reads.jobs_finished_per_minute(now - 3600)),
        "list": await work(store, lambda: reads.jobs_list(ListParams())),
        "list completed": await work(
            store, lambda: reads.jobs_list(ListParams(status=JobStatus.COMPLETED))
        ),
        "list a queue": await work(store, lambda: reads.jobs_list(ListParams(queue="q"))),
        "list failed": await work(store, lambda: reads.jobs_list(ListParams(status=FAILED))),
        "list a queue's queued": await work(
            store, lambda: reads.jobs_list(ListParams(queue="q", status=JobStatus.QUEUED))
        ),
        # Running jobs are in no status index (migration 9): their leases find them.
        "list running": await work(store, lambda: reads.jobs_list(ListParams(status=RUNNING))),
        "list a queue's running": await work(
            store, lambda: reads.jobs_list(ListParams(queue="q", status=RUNNING))
        ),
        "count running": await work(
            store, lambda: reads.jobs_count(JobMatch(statuses=frozenset([RUNNING])))
        ),
        "count a queue's unfinished": await work(
            store, lambda: reads.jobs_count(JobMatch(statuses=UNFINISHED, queue="q"))
        ),
        "others' running progress": await work(
            store, lambda: reads.jobs_running_progress("another runtime")
        ),
    }


def assert_flat(small: dict[str, int], large: dict[str, int]) -> None:
    grown = {name: round(large[name] / small[name], 2) for name in small}
    assert all(ratio < 1.2 for ratio in grown.values()), (grown, small, large)


async def test_the_hot_path_costs_the_same_on_a_store_20_times_larger(
    stores: dict[int, SQLiteStore],
) -> None:
    assert_flat(await hot_path(stores[SMALL]), await hot_path(stores[LARGE]))


async def test_retention_and_the_operators_reads_cost_the_same_on_a_larger_store(
    stores: dict[int, SQLiteStore],
) -> None:
    """A retention pass that finds nothing to delete reads nothing (before migration 8
    it read every completed job: its search took jobs_by_status), nor does a purge of one
    queue; the lists' first pages and throughput read their page or range."""
    assert_flat(await operators(stores[SMALL]), await operators(stores[LARGE]))
