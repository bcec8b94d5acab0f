"""Concurrency bounds, cancellation and failure of handlers."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import (
    JobCancelled,
    JobStatus,
    Progress,
    Queue,
    Runtime,
    check_cancelled,
    current_job,
)

from ..conftest import next_event, wait_until

pytestmark = pytest.mark.anyio


class Bounded(Queue):
    """Counts how many of its jobs run at once; each waits until released."""

    name = "bounded"
    worker_count = 3

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.full = anyio.Event()
        self.release = anyio.Event()

    async def handle_item(self, item: Any) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running == self.worker_count:
            self.full.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1


async def test_concurrency_reaches_the_bound_and_never_exceeds_it(db_path: Path) -> None:
    bounded = Bounded()
    async with Runtime(db_path, queues=[bounded]) as rt:
        jobs = await rt.enqueue_many("bounded", list(range(20)))
        with anyio.fail_after(10):
            await bounded.full.wait()
        running = await rt.list_jobs(queue="bounded", status=JobStatus.RUNNING)
        assert len(running) == 3
        bounded.release.set()
        for job in jobs:
            assert (await rt.wait(job.id, timeout=10)).status is JobStatus.COMPLETED
    assert bounded.peak == 3


async def test_queues_have_independent_bounds(db_path: Path) -> None:
    class Other(Bounded):
        name = "other"
        worker_count = 1

    a, b = Bounded(), Other()
    async with Runtime(db_path, queues=[a, b]) as rt:
        await rt.enqueue_many("bounded", list(range(5)))
        await rt.enqueue_many("other", list(range(5)))
        with anyio.fail_after(10):
            await a.full.wait()
            await b.full.wait()
        a.release.set()
        b.release.set()
    assert (a.peak, b.peak) == (3, 1)


async def test_higher_priority_runs_first(db_path: Path) -> None:
    order: list[int] = []

    class Ordered(Queue):
        name = "ordered"

        async def handle_item(self, item: int) -> None:
            order.append(item)

    async with Runtime(db_path, queues=[Ordered()], workers=False) as rt:
        await rt.enqueue_many("ordered", [1, 2])
        await rt.enqueue("ordered", 10, priority=5)
        await rt.enqueue("ordered", 3, priority=-1)
    async with Runtime(db_path, queues=[Ordered()]) as rt:
        last = (await rt.list_jobs(limit=1))[0]
        await rt.wait(last.id, timeout=10)
    assert order == [10, 1, 2, 3]


class Blocking(Queue):
    name = "blocking"
    worker_count = 1

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.ran: list[Any] = []

    async def handle_item(self, item: Any) -> None:
        self.ran.append(item)
        self.started.set()
        await anyio.sleep_forever()


async def test_cancelling_a_queued_job_means_it_never_runs(db_path: Path) -> None:
    blocking = Blocking()
    async with Runtime(db_path, queues=[blocking], shutdown_grace=0) as rt:
        first = await rt.enqueue("blocking", "first")
        second = await rt.enqueue("blocking", "second")
        with anyio.fail_after(10):
            await blocking.started.wait()
        cancelled = await rt.request_job_cancel("blocking", second.id)
        assert cancelled.status is JobStatus.CANCELLED
        assert cancelled.finished_at is not None
        await rt.request_job_cancel("blocking", first.id)
        assert (await rt.wait(first.id, timeout=10)).status is JobStatus.CANCELLED
        # The slot is free again and nothing else is queued: "second" must not have run.
        await rt.enqueue("blocking", "third")
        with anyio.fail_after(10):
            await wait_until(lambda: len(blocking.ran) == 2)
        assert blocking.ran == ["first", "third"]
        history = await rt.history(second.id)
        assert [h.status for h in history] == [JobStatus.QUEUED, JobStatus.CANCELLED]


async def test_cancelling_a_running_async_job(db_path: Path) -> None:
    blocking = Blocking()
    async with Runtime(db_path, queues=[blocking]) as rt:
        stream = rt.events()
        job = await rt.enqueue("blocking", {})
        with anyio.fail_after(10):
            await blocking.started.wait()
            returned = await rt.request_job_cancel("blocking", job.id)
            assert returned.status is JobStatus.CANCELLING
            await next_event(stream, job_id=job.id, status=JobStatus.CANCELLING)
            await next_event(stream, job_id=job.id, status=JobStatus.CANCELLED)
        done = await rt.job_status("blocking", job.id)
        assert done.status is JobStatus.CANCELLED
        statuses = [h.status for h in await rt.history(job.id)]
        assert statuses == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
        ]
        # Cancelling a finished job changes nothing.
        again = await rt.request_job_cancel("blocking", job.id)
        assert again.status is JobStatus.CANCELLED
        assert len(await rt.history(job.id)) == 4


async def test_the_cancelling_event_carries_the_latest_progress(db_path: Path) -> None:
    # Progress reaches the store coalesced (here at most every 60 s): the cancellation's
    # events must still show the last report, not an older stored one, or a live bar
    # would jump back as the job is cancelled.
    class Reporting(Queue):
        name = "reporting"

        def __init__(self) -> None:
            self.reported = anyio.Event()

        async def handle_item(self, item: Any) -> None:
            for step in range(1, 4):
                self.report_progress(current=step, total=10)
            self.reported.set()
            await anyio.sleep_forever()

    reporting = Reporting()
    async with Runtime(db_path, queues=[reporting], progress_interval=60) as rt:
        stream = rt.events(statuses=[JobStatus.CANCELLING, JobStatus.CANCELLED])
        job = await rt.enqueue("reporting", {})
        with anyio.fail_after(10):
            await reporting.reported.wait()
            await rt.request_job_cancel("reporting", job.id)
            cancelling = await next_event(stream, job_id=job.id, status=JobStatus.CANCELLING)
            cancelled = await next_event(stream, job_id=job.id, status=JobStatus.CANCELLED)
        assert (cancelling.progress.current, cancelling.progress.total) == (3, 10)
        assert (cancelled.progress.current, cancelled.progress.total) == (3, 10)


async def test_reports_are_events_when_the_running_transition_went_out_first(
    db_path: Path,
) -> None:
    # The store tail can publish a claim's "running" transition before the worker that
    # got the job registers its run. Forced here (white-box: the engine starts a run for
    # a transition the tail has already published); its reports must still be events.
    # The runtime runs no workers: the job waits, and the test plays the worker.
    async with Runtime(db_path, queues=[Blocking()], workers=False) as rt:
        stream = rt.events()
        job = await rt.enqueue("blocking", {})
        with anyio.fail_after(10):
            queued = await next_event(stream, job_id=job.id, status=JobStatus.QUEUED)
        engine = rt._engine
        run = engine.start_run(job, "token", queued.seq, is_async=True)
        try:
            run.ctx.report(Progress(current=1, total=2))
            with anyio.fail_after(10):
                event = await next_event(stream, job_id=job.id)
            assert (event.progress.current, event.progress.total) == (1, 2)
        finally:
            engine.end_run(run)


async def test_cancelling_a_running_sync_job_stops_it_at_check_cancelled(db_path: Path) -> None:
    started = threading.Event()
    stopped_at: list[int] = []

    class Looping(Queue):
        name = "looping"

        def handle_item(self, item: Any) -> None:
            started.set()
            for i in range(100_000):
                try:
                    check_cancelled()
                except JobCancelled:
                    stopped_at.append(i)
                    raise
                time.sleep(0.001)

    async with Runtime(db_path, queues=[Looping()]) as rt:
        job = await rt.enqueue("looping", {})
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(started.wait)
            await rt.request_job_cancel("looping", job.id)
            done = await rt.wait(job.id)
    assert done.status is JobStatus.CANCELLED
    assert len(stopped_at) == 1


class Failing(Queue):
    name = "failing"

    async def handle_item(self, item: dict[str, Any]) -> Any:
        match item["how"]:
            case "raise":
                raise ValueError(f"bad row {item.get('row')}")
            case "fail_job":
                self.fail_job(error="nothing to export")
            case "swallowed":
                try:
                    self.fail_job(error="still failed")
                except Exception:
                    return "pretend it worked"
            case "unencodable":
                return object()
        return "ok"


@pytest.mark.parametrize(
    ("how", "error", "has_traceback"),
    [
        ("raise", "ValueError: bad row 7", True),
        ("fail_job", "nothing to export", False),
        ("swallowed", "still failed", False),
        ("unencodable", "cannot be stored as JSON", False),
    ],
)
async def test_failures_keep_the_error(
    db_path: Path, how: str, error: str, has_traceback: bool
) -> None:
    async with Runtime(db_path, queues=[Failing()]) as rt:
        job = await rt.enqueue("failing", {"how": how, "row": 7})
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.FAILED
        assert error in (done.error or "")
        assert (done.traceback is not None) is has_traceback
        if how == "raise":
            assert "handle_item" in (done.traceback or "")
        assert done.attempts == 1
        history = await rt.history(job.id)
        assert history[-1].status is JobStatus.FAILED
        assert error in (history[-1].message or "")


async def test_a_failing_job_does_not_disturb_others(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Failing()]) as rt:
        jobs = await rt.enqueue_many(
            "failing", [{"how": "raise"} if i % 2 else {"how": "fine"} for i in range(10)]
        )
        results = [await rt.wait(j.id, timeout=10) for j in jobs]
    assert [r.status for r in results] == [
        JobStatus.FAILED if i % 2 else JobStatus.COMPLETED for i in range(10)
    ]


async def test_sync_handler_exception_fails_the_job(db_path: Path) -> None:
    class SyncFail(Queue):
        name = "syncfail"

        def handle_item(self, item: Any) -> None:
            raise KeyError(current_job().id)

    async with Runtime(db_path, queues=[SyncFail()]) as rt:
        job = await rt.enqueue("syncfail", {})
        done = await rt.wait(job.id, timeout=10)
    assert done.status is JobStatus.FAILED
    assert done.error == f"KeyError: '{job.id}'"
