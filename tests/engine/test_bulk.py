"""Bulk cancel and rerun on both stores: 10,000 jobs in bounded transactions while workers
run, each job with its history row; filters by queue, status, creator and age; and what
is refused."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, QueueNotFound, Runtime, ValidationError
from conveyor.testing import ManualClock

from ..conftest import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

COUNT = 10_000


class Blocking(Queue):
    name = "blocking"
    worker_count = 4

    async def handle_item(self, item: Any) -> None:
        await anyio.sleep_forever()


class Failing(Queue):
    name = "failing"
    worker_count = 16

    async def handle_item(self, item: Any) -> None:
        raise RuntimeError("always")


class Other(Queue):
    name = "other"

    async def handle_item(self, item: Any) -> None:
        await anyio.sleep_forever()


async def statuses_of(rt: Runtime, queue: str) -> Counter[JobStatus]:
    counts = (await rt.queue_counts())[queue]
    return Counter({status: n for status, n in counts.items() if n})


async def test_cancel_every_matching_job_while_workers_run(location: str) -> None:
    async with Runtime(location, queues=[Blocking(), Other()], shutdown_grace=0) as rt:
        jobs = await rt.enqueue_many("blocking", [{}] * (COUNT - 100))
        later = await rt.enqueue_many("blocking", [{}] * 100, delay=3600)
        untouched = await rt.enqueue("other", {})
        with anyio.fail_after(20):  # four of them run
            await wait_until(lambda: statuses_of_running(rt), 0.05)
        assert await rt.cancel_matching(queue="blocking") == COUNT
        with anyio.fail_after(30):  # the running ones stop and end cancelled too
            await wait_until(lambda: only_cancelled(rt, "blocking"), 0.05)
        assert (await rt.job(untouched.id)).status is not JobStatus.CANCELLED
        first, last = await rt.history(jobs[0].id), await rt.history(jobs[-1].id)
        assert first[-1].status is JobStatus.CANCELLED
        assert [h.status for h in last] == [JobStatus.QUEUED, JobStatus.CANCELLED]
        assert last[-1].message == "cancelled before it ran"
        assert (await rt.history(later[0].id))[-1].status is JobStatus.CANCELLED
        if location.startswith("postgresql"):  # a seq holds its transaction's id (<< 20)
            early = (await rt.history(jobs[10].id))[-1]  # waiting: in the first batch
            assert early.seq >> 20 != last[-1].seq >> 20, "one transaction for all"
        assert await rt.cancel_matching(queue="blocking") == 0  # nothing is left to cancel


async def statuses_of_running(rt: Runtime) -> bool:
    return (await statuses_of(rt, "blocking"))[JobStatus.RUNNING] == 4


async def only_cancelled(rt: Runtime, queue: str) -> bool:
    return await statuses_of(rt, queue) == Counter({JobStatus.CANCELLED: COUNT})


async def test_rerun_every_failed_job_once_while_workers_run(location: str) -> None:
    async with Runtime(location, queues=[Failing()], shutdown_grace=0) as rt:
        jobs = await rt.enqueue_many("failing", [{}] * COUNT)
        with anyio.fail_after(90):
            await wait_until(lambda: all_failed(rt), 0.1)
        # They fail again at once, and none is taken twice by the same call.
        assert await rt.rerun_matching(queue="failing", by="ops") == COUNT
        with anyio.fail_after(90):
            await wait_until(lambda: all_failed(rt), 0.1)
        history = [h.status for h in await rt.history(jobs[123].id)]
        assert history == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED] * 2
        assert (await rt.history(jobs[0].id))[3].message == "rerun by ops"


async def all_failed(rt: Runtime) -> bool:
    return await statuses_of(rt, "failing") == Counter({JobStatus.FAILED: COUNT})


async def test_filters_by_status_creator_and_age(location: str) -> None:
    clock = ManualClock()
    async with Runtime(location, queues=[Other()], workers=False, clock=clock) as rt:
        old = await rt.enqueue("other", {}, created_by="nightly")
        clock.advance(60)
        mine = await rt.enqueue("other", {}, created_by="me")
        scheduled = await rt.enqueue("other", {}, created_by="me", delay=60)
        assert await rt.cancel_matching(statuses=["scheduled"]) == 1
        assert (await rt.job(scheduled.id)).status is JobStatus.CANCELLED
        assert await rt.cancel_matching(created_by="nobody") == 0
        assert await rt.cancel_matching(older_than=30) == 1  # only the older one
        assert (await rt.job(old.id)).status is JobStatus.CANCELLED
        assert (await rt.job(mine.id)).status is JobStatus.QUEUED
        assert await rt.rerun_matching(statuses=["cancelled"], created_by="nightly") == 1
        assert (await rt.job(old.id)).status is JobStatus.QUEUED


async def test_what_bulk_operations_refuse(location: str) -> None:
    async with Runtime(location, queues=[Other()], workers=False) as rt:
        with pytest.raises(ValidationError, match="statuses"):
            await rt.cancel_matching(statuses=["completed"])
        with pytest.raises(ValidationError, match="statuses"):
            await rt.rerun_matching(statuses=["queued"])
        with pytest.raises(ValidationError, match="statuses"):
            await rt.cancel_matching(statuses=[])
        with pytest.raises(QueueNotFound):
            await rt.cancel_matching(queue="nope")
        with pytest.raises(ValidationError, match="older_than"):
            await rt.rerun_matching(older_than=-1)
        with pytest.raises(ValidationError, match="created_by"):
            await rt.cancel_matching(created_by=5)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="by"):
            await rt.rerun_matching(by=["x"])  # type: ignore[arg-type]
