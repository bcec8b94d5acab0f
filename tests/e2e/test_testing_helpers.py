"""conveyor.testing as users write it in their own suites (this file doubles as the
example the module docstring shows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime, WaitTimeout, testing

pytestmark = pytest.mark.anyio


class ExportQueue(Queue):
    name = "exports"
    worker_count = 2

    async def handle_item(self, item: dict[str, Any]) -> dict[str, str]:
        self.report_progress(current=1, total=1)
        if item["query"] == "empty":
            self.fail_job(error="nothing to export")
        return {"download_url": f"/downloads/{item['query']}.csv"}


class Chain(Queue):
    """Each job enqueues the next, until n reaches 0: drain waits for all of them."""

    name = "chain"

    def __init__(self) -> None:
        self.rt: Runtime | None = None

    async def handle_item(self, item: dict[str, int]) -> int:
        assert self.rt is not None
        if item["n"] > 0:
            await self.rt.enqueue("chain", {"n": item["n"] - 1})
        return item["n"]


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    async with testing.runtime([ExportQueue()]) as runtime:
        yield runtime


async def test_export(rt: Runtime) -> None:
    job = await rt.enqueue("exports", {"query": "q"})
    failed = await rt.enqueue("exports", {"query": "empty"})
    await rt.drain(timeout=10)
    assert (await rt.job_status("exports", job.id)).result == {"download_url": "/downloads/q.csv"}
    assert (await rt.job_status("exports", failed.id)).error == "nothing to export"


async def test_drain_waits_for_jobs_that_jobs_enqueue() -> None:
    chain = Chain()
    async with testing.runtime([chain]) as rt:
        chain.rt = rt
        await rt.enqueue("chain", {"n": 5})
        await rt.drain(timeout=10)
        jobs = await rt.list_jobs(queue="chain")
    assert sorted(j.result for j in jobs) == [0, 1, 2, 3, 4, 5]
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}


async def test_drain_ignores_jobs_scheduled_for_later_and_can_time_out() -> None:
    release = anyio.Event()

    class Stuck(Queue):
        name = "stuck"

        async def handle_item(self, item: Any) -> None:
            await release.wait()

    async with testing.runtime([Stuck()]) as rt:
        await rt.enqueue("stuck", {}, delay=3600)
        await rt.drain(timeout=10)  # returns: the only job is not due
        await rt.enqueue("stuck", {})
        with pytest.raises(WaitTimeout):
            await rt.drain(timeout=0.3)
        release.set()
        await rt.drain(timeout=10)
