"""Delayed jobs, retries with backoff, and timeouts: durable, in history and events."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime, ValidationError, check_cancelled, current_job
from conveyor.backoff import constant, exponential
from conveyor.testing import ManualClock

pytestmark = pytest.mark.anyio


class Record(Queue):
    name = "record"
    worker_count = 2

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def handle_item(self, item: Any) -> str:
        self.ran.append(current_job().id)
        return "ran"


async def test_a_delayed_job_waits_scheduled_then_runs(db_path: Path) -> None:
    record = Record()
    async with Runtime(db_path, queues=[record]) as rt:
        job = await rt.enqueue("record", {}, delay=0.3)
        assert job.status is JobStatus.SCHEDULED
        assert job.scheduled_at is not None
        assert (await rt.job_status("record", job.id)).status is JobStatus.SCHEDULED
        assert record.ran == []
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
        history = await rt.history(job.id)
        assert [h.status for h in history] == [
            JobStatus.SCHEDULED,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        due = history[1]
        assert due.message == "due"
        # Promoted on time: not before it was due, and promptly after (the promoter
        # sleeps until the due time; the slack is for a loaded machine).
        lateness = (due.at - job.scheduled_at).total_seconds()
        assert 0 <= lateness < 0.25


async def test_at_schedules_for_a_moment_and_past_moments_run_now(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Record()]) as rt:
        soon = await rt.enqueue("record", 1, at=datetime.now(UTC) + timedelta(seconds=0.2))
        past = await rt.enqueue("record", 2, at=datetime.now(UTC) - timedelta(hours=1))
        assert soon.status is JobStatus.SCHEDULED
        assert past.status is JobStatus.QUEUED
        assert (await rt.wait(soon.id, timeout=10)).status is JobStatus.COMPLETED
        assert (await rt.wait(past.id, timeout=10)).status is JobStatus.COMPLETED


async def test_an_earlier_job_wakes_the_scheduler(db_path: Path) -> None:
    record = Record()
    async with Runtime(db_path, queues=[record], shutdown_grace=0) as rt:
        late = await rt.enqueue("record", "late", delay=3600)
        await anyio.wait_all_tasks_blocked()  # the promoter sleeps until the late job is due
        early = await rt.enqueue("record", "early", delay=0.1)
        with anyio.fail_after(10):
            await rt.wait(early.id)
        assert (await rt.job_status("record", late.id)).status is JobStatus.SCHEDULED


def test_a_manual_clock_moves_forward_by_finite_seconds_only() -> None:
    clock = ManualClock(start=1_800_000_000)
    for bad in (-1, math.nan, math.inf, 3e11, "10", True, None):
        with pytest.raises(ValueError, match="a clock"):
            clock.advance(bad)  # type: ignore[arg-type]
    assert (clock.now(), clock.monotonic()) == (1_800_000_000, 0)
    clock.advance(1.5)
    assert (clock.now(), clock.monotonic()) == (1_800_000_001.5, 1.5)
    for bad_start in (-1, math.inf, "now", 3e11):
        with pytest.raises(ValueError, match="a clock starts"):
            ManualClock(start=bad_start)  # type: ignore[arg-type]


class SlowRetry(Queue):
    """Fails its first attempt, then waits an hour to retry."""

    name = "slow_retry"
    max_attempts = 2
    backoff = constant(3600)

    async def handle_item(self, item: Any) -> int:
        if current_job().attempts == 1:
            raise ValueError("first attempt fails")
        return current_job().attempts


async def test_delays_and_retries_follow_a_manual_clock(db_path: Path) -> None:
    # An hour's delay and an hour's backoff, without waiting an hour: the engine's timed
    # waits are the clock's, so moving the clock is what makes the jobs due.
    clock = ManualClock()
    async with Runtime(db_path, queues=[Record(), SlowRetry()], clock=clock) as rt:
        delayed = await rt.enqueue("record", {}, delay=3600)
        flaky = await rt.enqueue("slow_retry", {})
        async with rt.events(job_id=flaky.id) as events:
            with anyio.fail_after(10):
                async for event in events:
                    if event.status is JobStatus.SCHEDULED:
                        break
        clock.advance(3599)
        assert (await rt.job(delayed.id)).status is JobStatus.SCHEDULED
        assert (await rt.job(flaky.id)).status is JobStatus.SCHEDULED
        clock.advance(1)
        assert (await rt.wait(delayed.id, timeout=10)).status is JobStatus.COMPLETED
        done = await rt.wait(flaky.id, timeout=10)
        assert (done.status, done.result) == (JobStatus.COMPLETED, 2)
        due = (await rt.history(delayed.id))[1]
        assert due.status is JobStatus.QUEUED
        assert due.at.timestamp() == pytest.approx(clock.now(), abs=1e-3)  # no later


async def test_a_scheduled_job_can_be_cancelled(db_path: Path) -> None:
    record = Record()
    async with Runtime(db_path, queues=[record]) as rt:
        job = await rt.enqueue("record", {}, delay=0.2)
        cancelled = await rt.request_job_cancel("record", job.id)
        assert cancelled.status is JobStatus.CANCELLED
        other = await rt.enqueue("record", {}, delay=0.3)
        await rt.wait(other.id, timeout=10)
    assert record.ran == [other.id]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -1}, "delay must be >= 0"),
        ({"delay": "soon"}, "delay must be a number"),
        ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"delay": 1, "at": datetime.now(UTC)}, "not both"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"timeout": float("nan")}, "timeout must be a number"),
    ],
)
async def test_bad_scheduling_options(db_path: Path, options: Any, message: str) -> None:
    async with Runtime(db_path, queues=[Record()], workers=False) as rt:
        with pytest.raises(ValidationError, match=message):
            await rt.enqueue("record", {}, **options)
        assert await rt.list_jobs() == []


class Flaky(Queue):
    """Fails the first ``item["fail"]`` attempts with the given exception type."""

    name = "flaky"
    max_attempts = 3
    backoff = constant(0.05)
    retry_on = (ValueError, TimeoutError)

    async def handle_item(self, item: dict[str, Any]) -> int:
        attempt = current_job().attempts
        if attempt <= item["fail"]:
            if item.get("kind") == "key":
                raise KeyError(f"attempt {attempt}")
            if item.get("kind") == "fail_job":
                self.fail_job(error=f"gave up at {attempt}")
            raise ValueError(f"attempt {attempt}")
        return attempt


async def test_a_failing_job_is_retried_until_it_succeeds(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Flaky()]) as rt:
        job = await rt.enqueue("flaky", {"fail": 2})
        done = await rt.wait(job.id, timeout=10)
        assert (done.status, done.result, done.attempts, done.error) == (
            JobStatus.COMPLETED,
            3,
            3,
            None,
        )
        history = await rt.history(job.id)
        statuses = [h.status for h in history]
        assert statuses == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.SCHEDULED,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.SCHEDULED,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        retries = [h.message or "" for h in history if h.status is JobStatus.SCHEDULED]
        assert "attempt 1 of 3 failed" in retries[0]
        assert "ValueError: attempt 1" in retries[0]
        assert "ValueError: attempt 2" in retries[1]


async def test_retries_run_out(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Flaky()]) as rt:
        job = await rt.enqueue("flaky", {"fail": 10})
        done = await rt.wait(job.id, timeout=10)
        assert (done.status, done.attempts, done.error) == (
            JobStatus.FAILED,
            3,
            "ValueError: attempt 3",
        )
        once = await rt.enqueue("flaky", {"fail": 10}, max_attempts=1)
        assert (await rt.wait(once.id, timeout=10)).attempts == 1


@pytest.mark.parametrize("kind", ["key", "fail_job"])
async def test_only_retry_on_errors_are_retried(db_path: Path, kind: str) -> None:
    async with Runtime(db_path, queues=[Flaky()]) as rt:
        job = await rt.enqueue("flaky", {"fail": 1, "kind": kind})
        done = await rt.wait(job.id, timeout=10)
        assert (done.status, done.attempts) == (JobStatus.FAILED, 1)


async def test_cancelling_a_job_waiting_to_retry(db_path: Path) -> None:
    class Slow(Flaky):
        name = "slow"
        backoff = constant(3600)

    async with Runtime(db_path, queues=[Slow()]) as rt:
        stream = rt.events(statuses=[JobStatus.SCHEDULED])
        job = await rt.enqueue("slow", {"fail": 5})
        with anyio.fail_after(10):
            await stream.__anext__()
        cancelled = await rt.request_job_cancel("slow", job.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.error == "ValueError: attempt 1"


async def test_a_timeout_fails_an_async_job(db_path: Path) -> None:
    class Sleepy(Queue):
        name = "sleepy"
        timeout = 0.2

        async def handle_item(self, item: Any) -> None:
            await anyio.sleep(3600)

    async with Runtime(db_path, queues=[Sleepy()]) as rt:
        job = await rt.enqueue("sleepy", {})
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.FAILED
        assert done.error == "TimeoutError: timed out after 0.2s"
        assert done.timeout == 0.2


async def test_a_timed_out_job_is_retried_and_its_own_timeout_wins(db_path: Path) -> None:
    class Sleepy(Flaky):
        name = "sleepy"
        timeout = 3600

        async def handle_item(self, item: Any) -> int:
            if current_job().attempts == 1:
                await anyio.sleep(3600)
            return current_job().attempts

    async with Runtime(db_path, queues=[Sleepy()]) as rt:
        job = await rt.enqueue("sleepy", {}, timeout=0.2)
        done = await rt.wait(job.id, timeout=10)
        assert (done.status, done.result) == (JobStatus.COMPLETED, 2)
        history = await rt.history(job.id)
        assert "timed out after 0.2s" in (history[2].message or "")


async def test_a_timeout_stops_a_sync_job_at_its_next_check(db_path: Path) -> None:
    stopped = threading.Event()

    class Busy(Queue):
        name = "busy"
        timeout = 0.2

        def handle_item(self, item: Any) -> None:
            try:
                while True:
                    check_cancelled()
                    time.sleep(0.01)
            finally:
                stopped.set()

    async with Runtime(db_path, queues=[Busy()]) as rt:
        job = await rt.enqueue("busy", {})
        done = await rt.wait(job.id, timeout=10)
        assert done.error == "TimeoutError: timed out after 0.2s"
        assert await anyio.to_thread.run_sync(stopped.wait, 10)


def test_exponential_backoff_grows_to_its_cap_with_jitter() -> None:
    steady = exponential(base=1, cap=10, jitter=False)
    assert [steady(n) for n in (1, 2, 3, 4, 5, 50)] == [1, 2, 4, 8, 10, 10]
    jittered = exponential(base=1, cap=10)
    for n in (1, 3, 5):
        assert steady(n) / 2 <= jittered(n) <= steady(n)
    with pytest.raises(ValueError, match="base"):
        exponential(base=0)


def test_bad_retry_settings_fail_at_definition() -> None:
    with pytest.raises(ValidationError, match=r"NoAttempts\.max_attempts"):

        class NoAttempts(Record):
            name = "no_attempts"
            max_attempts = 0

    with pytest.raises(ValidationError, match=r"BadTimeout\.timeout"):

        class BadTimeout(Record):
            name = "bad_timeout"
            timeout = -1

    with pytest.raises(ValidationError, match=r"BadRetryOn\.retry_on"):

        class BadRetryOn(Record):
            name = "bad_retry_on"
            retry_on = ValueError  # type: ignore[assignment]  # not a tuple
