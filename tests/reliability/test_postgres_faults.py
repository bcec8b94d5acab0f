"""PostgreSQL under faults: the server terminates the workers' backends mid-batch, again
and again (pg_terminate_backend, as an operator or a failover does). Nothing is lost,
every job completes once, and work goes on."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

from conveyor import JobStatus, Runtime

from ..conftest import wait_until
from .conftest import Child, scaled
from .worker import Soak

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(scaled(180, 1800))]

JOBS = scaled(3000, 20_000)
ROUNDS = scaled(6, 40)


async def terminate_worker_backends() -> int:
    """Terminate every conveyor backend (the observer's too); how many went."""
    import asyncpg

    from ..conftest import POSTGRES_URL

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'conveyor%' AND datname = current_database()"
        )
    finally:
        await conn.close()
    return sum(1 for row in rows if row[0])


async def test_backends_terminated_mid_batch_lose_nothing(
    pg_url: str, children: Callable[..., Child], figure: Callable[..., None]
) -> None:
    start = time.monotonic()
    terminated = 0
    workers = [children("worker.py", pg_url, "--lease-ttl", "10") for _ in range(2)]
    async with Runtime(pg_url, queues=[Soak()], workers=False) as observer:
        jobs = await observer.enqueue_many("soak", [{"steps": 2} for _ in range(JOBS)])
        with anyio.fail_after(scaled(150, 1700)):
            for round_ in range(1, ROUNDS + 1):

                async def progressed(target: int = round_ * JOBS // (ROUNDS + 2)) -> bool:
                    counts = (await observer.queue_counts())["soak"]
                    return counts[JobStatus.COMPLETED] >= target

                await wait_until(progressed, 0.02)
                terminated += await terminate_worker_backends()

            async def all_completed() -> bool:
                counts = (await observer.queue_counts())["soak"]
                return counts[JobStatus.COMPLETED] == JOBS

            await wait_until(all_completed, 0.1)
        elapsed = time.monotonic() - start
        completed = (await observer.queue_counts())["soak"][JobStatus.COMPLETED]
        runs = 0
        for job in jobs:
            history = await observer.history(job.id)
            assert [h.status for h in history].count(JobStatus.COMPLETED) == 1
            runs += sum(h.status is JobStatus.RUNNING for h in history)
    for worker in workers:
        assert worker.proc.poll() is None, worker.output()  # the workers lived through it
    figure(
        jobs=JOBS,
        rounds=ROUNDS,
        backends_terminated=terminated,
        lost=JOBS - completed,
        reruns=runs - JOBS,
        seconds=round(elapsed, 1),
    )
