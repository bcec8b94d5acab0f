"""Unique jobs, retention and purge, and rate limits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime, SystemClock, ValidationError

from ..conftest import wait_until

pytestmark = pytest.mark.anyio


class Gate(Queue):
    name = "gate"
    worker_count = 4

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle_item(self, item: Any) -> Any:
        if item == "fail":
            raise RuntimeError("failed on purpose")
        if item == "wait":
            await self.release.wait()
        return item


async def test_a_unique_key_returns_the_unfinished_job(db_path: Path) -> None:
    gate = Gate()
    async with Runtime(db_path, queues=[gate]) as rt:
        first = await rt.enqueue("gate", "wait", unique_key="report:42")
        again = await rt.enqueue("gate", "other payload", unique_key="report:42")
        assert again.id == first.id
        assert again.payload == "wait"
        other_key = await rt.enqueue("gate", "wait", unique_key="report:43")
        assert other_key.id != first.id
        gate.release.set()
        await rt.wait(first.id, timeout=10)
        # Finished: the key is free again.
        later = await rt.enqueue("gate", "x", unique_key="report:42")
        assert later.id != first.id
        history = await rt.history(first.id)
        assert [h.status for h in history].count(JobStatus.QUEUED) == 1  # inserted once


async def test_concurrent_unique_enqueues_store_one_job(db_path: Path) -> None:
    gate = Gate()
    async with Runtime(db_path, queues=[gate], shutdown_grace=0) as rt:
        ids: list[str] = []

        async def enqueue() -> None:
            ids.append((await rt.enqueue("gate", "wait", unique_key="k")).id)

        async with anyio.create_task_group() as tg:
            for _ in range(50):  # many of them land in the same group commit
                tg.start_soon(enqueue)
        assert len(set(ids)) == 1
        assert len(await rt.list_jobs(queue="gate")) == 1


async def test_unique_keys_hold_across_processes_sharing_a_file(db_path: Path) -> None:
    async with (
        Runtime(db_path, queues=[Gate()], workers=False) as a,
        Runtime(db_path, queues=[Gate()], workers=False) as b,
    ):
        ids: list[str] = []

        async def enqueue(rt: Runtime) -> None:
            ids.append((await rt.enqueue("gate", "wait", unique_key="shared")).id)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(enqueue, a if i % 2 else b)
        assert len(set(ids)) == 1


async def test_bad_unique_keys(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Gate()], workers=False) as rt:
        for key in ("", 5):
            with pytest.raises(ValidationError, match="unique_key"):
                await rt.enqueue("gate", "x", unique_key=key)  # type: ignore[arg-type]


class Later(SystemClock):
    """A clock some days ahead: what retention sees after that many days."""

    def __init__(self, days: float) -> None:
        self.offset = days * 86400

    def now(self) -> float:
        return time.time() + self.offset


async def test_retention_deletes_old_finished_jobs_and_their_history(db_path: Path) -> None:
    class Idle(Gate):
        name = "idle"  # served by no runtime below: its job stays unfinished

    gate = Gate()
    async with Runtime(db_path, queues=[gate, Idle()], shutdown_grace=0) as rt:
        done = await rt.enqueue("gate", "ok")
        failed = await rt.enqueue("gate", "fail")
        cancelled = await rt.enqueue("gate", "x", delay=3600)
        pending = await rt.enqueue("idle", "x", delay=3600)
        await rt.request_job_cancel("gate", cancelled.id)
        await rt.wait(done.id, timeout=10)
        await rt.wait(failed.id, timeout=10)

    async def remaining(days: float) -> set[str]:
        # A worker runtime applies the retention periods as it starts.
        async with Runtime(db_path, queues=[Gate()], clock=Later(days)) as rt:
            return {j.id for j in await rt.list_jobs()}

    assert await remaining(1) == {done.id, failed.id, cancelled.id, pending.id}
    assert await remaining(8) == {failed.id, pending.id}  # 7 days for completed/cancelled
    assert await remaining(31) == {pending.id}  # 30 for failed; unfinished jobs stay
    async with Runtime(db_path, queues=[Gate(), Idle()], workers=False) as rt:
        assert (await rt.job_status("idle", pending.id)).status is JobStatus.QUEUED
        for gone in (done, failed, cancelled):
            with pytest.raises(Exception, match="unknown job"):
                await rt.history(gone.id)


def test_retention_runs_at_an_interval_that_follows_it() -> None:
    from conveyor.engine._retention import retention_interval

    day = 86400.0
    assert retention_interval({JobStatus.COMPLETED: 7 * day, JobStatus.FAILED: 30 * day}) == 600
    assert retention_interval({JobStatus.COMPLETED: 120, JobStatus.FAILED: day}) == 12
    assert retention_interval({JobStatus.COMPLETED: 0}) == 1


async def test_a_short_retention_is_applied_while_the_runtime_runs(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Gate()], retain_completed=1, retain_failed=3600) as rt:
        jobs = await rt.enqueue_many("gate", ["ok"] * 300 + ["fail"])
        for job in jobs:
            await rt.wait(job.id, timeout=10)

        async def only_the_failed_one_is_left() -> bool:
            return [j.status for j in await rt.list_jobs(limit=1000)] == [JobStatus.FAILED]

        with anyio.fail_after(10):  # within retention (1 s) + its interval (1 s), in batches
            await wait_until(only_the_failed_one_is_left, interval=0.1)


async def test_purge_on_demand(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Gate()]) as rt:
        jobs = await rt.enqueue_many("gate", ["ok", "ok", "fail"])
        for job in jobs:
            await rt.wait(job.id, timeout=10)
        assert await rt.purge(older_than=3600) == 0
        assert await rt.purge(statuses=["failed"]) == 1
        assert await rt.purge() == 2
        assert await rt.list_jobs() == []
        with pytest.raises(ValidationError, match="only completed"):
            await rt.purge(statuses=["queued"])
        with pytest.raises(ValidationError, match="older_than"):
            await rt.purge(older_than=-1)


async def test_a_rate_limit_spaces_job_starts(db_path: Path) -> None:
    starts: list[float] = []

    class Limited(Queue):
        name = "limited"
        worker_count = 10
        rate_limit = (3, 0.5)

        async def handle_item(self, item: Any) -> None:
            starts.append(anyio.current_time())

    async with Runtime(db_path, queues=[Limited()]) as rt:
        jobs = await rt.enqueue_many("limited", list(range(7)))
        for job in jobs:
            await rt.wait(job.id, timeout=10)
    assert len(starts) == 7
    # Any 4 consecutive starts span at least one window: never 4 within 0.5 s.
    assert all(starts[i + 3] - starts[i] >= 0.5 - 1e-3 for i in range(len(starts) - 3))


def test_bad_rate_limits() -> None:
    for value in ((0, 1.0), (3, 0), "fast", (1, 2, 3)):
        with pytest.raises(ValidationError, match=r"Bad\.rate_limit"):

            class Bad(Gate):
                name = "bad"
                rate_limit = value  # type: ignore[assignment]
