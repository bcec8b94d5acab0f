"""conveyor.testing as users write it in their own suites (this file doubles as the
example the module docstring shows)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from conveyor import ConveyorError, JobStatus, Queue, Runtime, ValidationError, WaitTimeout, testing

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


class Flaky(Queue):
    """Fails its first two attempts, with a backoff of an hour between them."""

    name = "flaky"
    max_attempts = 3
    backoff = staticmethod(lambda attempt: 3600.0)

    async def handle_item(self, item: dict[str, Any]) -> str:
        if self.current_job.attempts < 3:
            raise ValueError(f"attempt {self.current_job.attempts} broke")
        return "third time lucky"


async def test_drain_run_scheduled_moves_the_clock_through_backoff_and_delays() -> None:
    clock = testing.ManualClock()
    async with testing.runtime([Flaky(), ExportQueue()], clock=clock) as rt:
        start = clock.now()
        retried = await rt.enqueue("flaky", {})
        later = await rt.enqueue("exports", {"query": "late"}, delay=86400)
        with anyio.fail_after(10):  # real time: two hours of backoff and a day of delay
            await rt.drain(run_scheduled=True, timeout=10)
        done = await rt.job(retried.id)
        assert (done.status, done.result, done.attempts) == (
            JobStatus.COMPLETED,
            "third time lucky",
            3,
        )
        assert (await rt.job(later.id)).status is JobStatus.COMPLETED
        assert clock.now() - start == pytest.approx(86400)  # as far as the latest, no more


async def test_drain_run_scheduled_needs_a_manual_clock() -> None:
    async with testing.runtime([ExportQueue()]) as rt:
        with pytest.raises(ValidationError, match="ManualClock"):
            await rt.drain(run_scheduled=True)
        with pytest.raises(ValidationError, match="run_scheduled"):
            await rt.drain(run_scheduled="yes")  # type: ignore[arg-type]


async def test_assert_enqueued_matches_a_subset_and_counts() -> None:
    async with testing.runtime([ExportQueue()]) as rt:
        await rt.enqueue("exports", {"query": "q", "format": {"kind": "csv", "sep": ","}})
        await rt.enqueue("exports", {"query": "q", "format": {"kind": "json"}})
        await rt.enqueue("exports", {"query": "r"})
        await rt.drain(timeout=10)  # ran jobs still count as enqueued
        both = await rt.assert_enqueued("exports", payload={"query": "q"}, count=2)
        assert [j.payload["format"]["kind"] for j in both] == ["csv", "json"]  # oldest first
        await rt.assert_enqueued("exports", payload={"format": {"kind": "csv"}}, count=1)
        await rt.assert_enqueued("exports", count=3)
        await rt.assert_enqueued("exports", payload={"query": "nope"}, count=0)
        assert len(await testing.assert_enqueued(rt, "exports")) == 3  # any Runtime
        with pytest.raises(AssertionError) as failed:
            await rt.assert_enqueued("exports", payload={"query": "q", "format": {"kind": "x"}})
        message = str(failed.value)
        assert message.startswith(
            "expected at least 1 job on queue 'exports' with a payload matching"
            " {'query': 'q', 'format': {'kind': 'x'}}, found 0"
        )
        assert "queue 'exports' has 3:" in message
        assert "completed: {'query': 'r'}" in message
        with pytest.raises(AssertionError, match=r"expected 1 job .* found 2"):
            await rt.assert_enqueued("exports", payload={"query": "q"}, count=1)
        with pytest.raises(ValidationError, match="count"):
            await rt.assert_enqueued("exports", count=-1)
        with pytest.raises(ValidationError, match="payload"):
            await rt.assert_enqueued("exports", payload=object())


async def test_inline_enqueue_returns_the_job_once_it_ran() -> None:
    clock = testing.ManualClock()
    chain = Chain()
    async with testing.runtime([ExportQueue(), Flaky(), chain], inline=True, clock=clock) as rt:
        chain.rt = rt
        job = await rt.enqueue("exports", {"query": "q"})
        assert (job.status, job.result) == (
            JobStatus.COMPLETED,
            {"download_url": "/downloads/q.csv"},
        )
        failed = await rt.enqueue("exports", {"query": "empty"})  # recorded, not raised
        assert (failed.status, failed.error) == (JobStatus.FAILED, "nothing to export")
        many = await rt.enqueue_many("exports", [{"query": "a"}, {"query": "b"}])
        assert [j.status for j in many] == [JobStatus.COMPLETED] * 2
        retry = await rt.enqueue("flaky", {})
        assert (retry.status, retry.attempts) == (JobStatus.SCHEDULED, 1)  # its retry waits
        delayed = await rt.enqueue("exports", {"query": "later"}, delay=60)
        assert delayed.status is JobStatus.SCHEDULED
        first = await rt.enqueue("chain", {"n": 2})  # what its handler enqueues waits
        assert first.status is JobStatus.COMPLETED
        await rt.drain(run_scheduled=True, timeout=10)
        assert (await rt.job(retry.id)).status is JobStatus.COMPLETED
        assert (await rt.job(delayed.id)).status is JobStatus.COMPLETED
        await rt.assert_enqueued("chain", count=3)
    with pytest.raises(ValidationError, match="inline"):
        testing.TestRuntime("x.db", inline=1)  # type: ignore[arg-type]


async def test_a_payload_nested_too_deeply_to_match_is_refused() -> None:
    """Found by the fuzz below: a payload nested past the interpreter's recursion limit
    crashed assert_enqueued with a RecursionError."""
    from .test_boundaries import deep

    async with testing.runtime([ExportQueue()], clock=testing.ManualClock()) as rt:
        with pytest.raises(ValidationError, match="nested too deeply"):
            await rt.assert_enqueued("exports", payload=deep(3000), count=0)


@pytest.mark.timeout(120)
async def test_the_helpers_accept_or_refuse_anything() -> None:
    """assert_enqueued, drain and TestRuntime with any value for any argument: an
    answer, an AssertionError (a failed assertion) or a ConveyorError; never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from .test_boundaries import anything

    clock = testing.ManualClock()
    async with testing.runtime([ExportQueue()], clock=clock) as rt:
        await rt.enqueue("exports", {"query": "q", "n": [1, 2]})
        await rt.drain(timeout=10)

        async def one(queue: Any, payload: Any, count: Any, run_scheduled: Any) -> None:
            with anyio.fail_after(20):
                with contextlib.suppress(ConveyorError, AssertionError):
                    await rt.assert_enqueued(queue, payload=payload, count=count)
                with contextlib.suppress(ConveyorError):
                    await rt.drain(timeout=5, run_scheduled=run_scheduled)
                with contextlib.suppress(ConveyorError):
                    testing.TestRuntime(rt.store, inline=run_scheduled, workers=bool(count))

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            st.sampled_from(["exports", "nope"]) | anything,
            anything | st.fixed_dictionaries({"query": anything}),
            st.integers(-3, 5) | anything,
            st.booleans() | anything,
        )
        def fuzz(queue: Any, payload: Any, count: Any, run_scheduled: Any) -> None:
            anyio.from_thread.run(one, queue, payload, count, run_scheduled)

        await anyio.to_thread.run_sync(fuzz)
        await rt.assert_enqueued("exports", payload={"n": [1, 2]}, count=1)  # still serves


async def test_inline_leaves_a_job_in_an_open_transaction_to_its_commit(pg_url: str) -> None:
    import asyncpg

    from conveyor.store.postgres import split_schema

    conn = await asyncpg.connect(split_schema(pg_url)[0])
    try:
        async with testing.runtime([ExportQueue()], inline=True, db=pg_url) as rt:
            async with conn.transaction():
                job = await rt.enqueue("exports", {"query": "q"}, connection=conn)
                assert job.status is JobStatus.QUEUED  # not waited for: nobody sees it yet
            await rt.drain(timeout=10)  # committed: it runs as usual
            assert (await rt.job(job.id)).status is JobStatus.COMPLETED
    finally:
        await conn.close()
