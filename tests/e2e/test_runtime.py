"""Enqueue, run, results, history, events and reads on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from conveyor import (
    HistoryEntry,
    InvalidTransition,
    Job,
    JobStatus,
    Progress,
    Queue,
    Runtime,
    RuntimeClosed,
    current_job,
    report_progress,
)
from conveyor.store import SQLiteStore, Transition
from conveyor.store.sqlite import SQLiteReads

from ..conftest import next_event, wait_until

pytestmark = pytest.mark.anyio


class Echo(Queue):
    name = "echo"
    worker_count = 2

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        self.report_progress(current=1, total=2, message="halfway")
        return {"echo": item, "job": current_job().id}


class Gate(Queue):
    """Jobs wait until the test opens the gate."""

    name = "gate"
    worker_count = 1

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.started: list[str] = []

    async def handle_item(self, item: Any) -> str:
        self.started.append(current_job().id)
        await self.open.wait()
        return "done"


async def test_job_runs_to_completion_with_result_and_history(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Echo()]) as rt:
        job = await rt.enqueue("echo", {"x": 1}, created_by="alice")
        assert job.status is JobStatus.QUEUED
        assert job.created_by == "alice"
        with anyio.fail_after(10):
            done = await rt.wait(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == {"echo": {"x": 1}, "job": job.id}
        assert done.attempts == 1
        assert done.progress == Progress(current=1, total=2, message="halfway")
        assert done.started_at is not None
        assert done.finished_at is not None
        assert done.created_at <= done.started_at <= done.finished_at
        history = await rt.history(job.id)
        assert [h.status for h in history] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        assert [h.seq for h in history] == sorted(h.seq for h in history)


async def test_enqueue_is_durable_when_it_returns(db_path: Path) -> None:
    gate = Gate()
    async with Runtime(db_path, queues=[gate], workers=False) as rt:
        job = await rt.enqueue("gate", [1, 2, 3])
        # A separate connection, as another process would see it.
        with sqlite3.connect(db_path) as other:
            row = other.execute(
                "SELECT status, payload FROM jobs WHERE id = ?", (job.id,)
            ).fetchone()
        assert row == ("queued", b"[1,2,3]")


async def test_enqueue_many_commits_all_together(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Gate()], workers=False) as rt:
        jobs = await rt.enqueue_many("gate", [{"n": i} for i in range(50)], created_by="bulk")
        assert len({j.id for j in jobs}) == 50
        assert [j.id for j in jobs] == sorted(j.id for j in jobs)  # ids sort by creation
        listed = await rt.list_jobs(queue="gate", limit=100)
        assert {j.id for j in listed} == {j.id for j in jobs}
        assert await rt.enqueue_many("gate", []) == []


async def test_events_arrive_in_order_per_job(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Echo()]) as rt:
        stream = rt.events(queue="echo")
        jobs = await rt.enqueue_many("echo", [{"n": i} for i in range(20)])
        seen: dict[str, list[JobStatus]] = {j.id: [] for j in jobs}
        with anyio.fail_after(10):
            async for event in stream:
                seen[event.job_id].append(event.status)
                if all(s and s[-1] is JobStatus.COMPLETED for s in seen.values()):
                    break
        for statuses in seen.values():
            # A progress report made before the "running" event went out is carried by
            # it rather than sent ahead of it; later ones repeat "running".
            distinct = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
            assert distinct == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]


async def test_transitions_are_published_in_seq_order(db_path: Path) -> None:
    class Quiet(Queue):
        name = "quiet"
        worker_count = 4

        async def handle_item(self, item: Any) -> None:
            await anyio.lowlevel.checkpoint()

    async with Runtime(db_path, queues=[Quiet()]) as rt:
        stream = rt.events()  # no progress reports: every event is a transition
        jobs = await rt.enqueue_many("quiet", list(range(30)))
        seqs: list[int] = []
        with anyio.fail_after(10):
            async for event in stream:
                seqs.append(event.seq)
                if len(seqs) == 3 * len(jobs):
                    break
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)


async def test_event_for_progress_carries_the_report(db_path: Path) -> None:
    release = anyio.Event()

    class Halfway(Queue):
        name = "halfway"

        async def handle_item(self, item: Any) -> None:
            self.report_progress(current=1, total=2, message="halfway")
            await release.wait()

    async with Runtime(db_path, queues=[Halfway()]) as rt:
        stream = rt.events()
        job = await rt.enqueue("halfway", {})
        with anyio.fail_after(10):
            event = await next_event(stream, job_id=job.id, status=JobStatus.RUNNING)
            while event.progress.message is None:
                event = await next_event(stream, job_id=job.id)
        release.set()
        assert event.status is JobStatus.RUNNING
        assert event.progress == Progress(current=1, total=2, message="halfway")
        wire = msgspec.json.decode(msgspec.json.encode(event))
        assert wire["type"] == "event"
        assert wire["event"] == "queue.job.changed"
        assert wire["status"] == "running"
        assert wire["seq"] == (await rt.history(job.id))[1].seq
        assert wire["progress"] == {"current": 1, "total": 2, "message": "halfway"}


async def test_a_subscriber_that_comes_after_a_job_started_gets_its_reports(
    db_path: Path,
) -> None:
    """A job started while no one listened (its "running" row skipped by the tail, not
    published): a stream opened later, a dashboard opened meanwhile, gets its reports."""
    send, receive = anyio.create_memory_object_stream[None](10)

    class Paced(Queue):
        name = "paced"

        async def handle_item(self, item: Any) -> None:
            for step in (1, 2):
                await receive.receive()
                self.report_progress(current=step, total=2)

    with send, receive:
        async with Runtime(db_path, queues=[Paced()], shutdown_grace=0) as rt:
            job = await rt.enqueue("paced", {})
            with anyio.fail_after(10):
                await wait_until(lambda: len(rt._engine.running) == 1)
                # The tail has read past the "running" row (it skips own rows unheard).
                seq = (await rt.history(job.id))[-1].seq
                await wait_until(lambda: rt._engine.events.seq >= seq)
                async with rt.events() as stream:
                    await send.send(None)
                    event = await next_event(stream, job_id=job.id)
            assert event.progress == Progress(current=1, total=2)
            await rt.cancel(job.id)


async def test_events_filter_by_job(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Echo()]) as rt:
        first = await rt.enqueue("echo", {"n": 1})
        stream = rt.events(job_id=first.id)
        second = await rt.enqueue("echo", {"n": 2})
        await rt.wait(second.id, timeout=10)
        await rt.wait(first.id, timeout=10)
        await stream.aclose()
        ids = {event.job_id async for event in stream}
        assert ids <= {first.id}


class HeldTail(SQLiteReads):
    """The reads of a real SQLite store, but the next history read without own rows
    waits for the test before it runs: the one way to force the interleaving below."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store.file)
        store.reads = self
        self.armed = False
        self.held = anyio.Event()
        self.go = anyio.Event()
        self.looked_up: list[str] = []

    async def history_after(
        self, seq: int, limit: int, *, everything: bool
    ) -> tuple[list[Transition], int]:
        if self.armed and not everything:
            self.armed = False
            self.held.set()
            await self.go.wait()
        return await super().history_after(seq, limit, everything=everything)

    async def job_get(self, job_id: str) -> Job | None:
        job = await super().job_get(job_id)
        self.looked_up.append(job_id)
        return job


async def finished(store: SQLiteStore, job_id: str) -> bool:
    job = await store.reads.job_get(job_id)
    return job is not None and job.status is JobStatus.COMPLETED


async def test_wait_sees_a_finish_committed_while_the_tail_read_past_it(db_path: Path) -> None:
    # The tail reads this runtime's own rows back only when someone listens. wait()
    # subscribing after the tail decided, but before its read ran, once lost the event.
    store, gate = SQLiteStore(db_path), Gate()
    reads = HeldTail(store)
    async with Runtime(store, queues=[gate], poll_interval=0.05) as rt:
        job = await rt.enqueue("gate", None)
        with anyio.fail_after(10):
            await wait_until(lambda: gate.started == [job.id])
            reads.armed = True
            await rt.enqueue("gate", None)  # its commit kicks the tail, which is held
            await reads.held.wait()
            async with anyio.create_task_group() as tg:
                waited: list[Job] = []

                async def wait() -> None:
                    waited.append(await rt.wait(job.id, timeout=10))

                tg.start_soon(wait)
                await wait_until(lambda: job.id in reads.looked_up)  # found it running
                gate.open.set()
                await wait_until(lambda: finished(store, job.id))
                reads.go.set()
        assert waited[0].status is JobStatus.COMPLETED


class HeldHistory(SQLiteReads):
    """The reads of a real SQLite store, but the next job-history read, once armed,
    waits for the test after it has read: a transition can then fall between it and
    the read of the job's row (see current_event)."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store.file)
        store.reads = self
        self.armed = False
        self.held = anyio.Event()
        self.go = anyio.Event()

    async def job_history(self, job_id: str) -> list[HistoryEntry]:
        history = await super().job_history(job_id)
        if self.armed:
            self.armed = False
            self.held.set()
            await self.go.wait()
        return history


async def test_a_transition_between_the_first_events_reads_is_not_repeated(
    db_path: Path,
) -> None:
    # events(job_id=) starts with the job's state, read as its history then its row. A
    # claim between the two once gave "running" twice, the second with the claim's own
    # progress (none): progress going back, as a new user saw in the README's example.
    store, gate = SQLiteStore(db_path), Gate()
    reads = HeldHistory(store)
    async with Runtime(store, queues=[gate], poll_interval=0.05) as rt:
        await rt.pause("gate")
        job = await rt.enqueue("gate", None)
        seen: list[JobStatus] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    async for event in rt.events(job_id=job.id):
                        seen.append(event.status)
                        if event.status.is_terminal:
                            return

                reads.armed = True
                tg.start_soon(watch)
                await reads.held.wait()  # read the history: queued
                await rt.resume("gate")
                await wait_until(lambda: gate.started == [job.id])  # claimed meanwhile
                reads.go.set()
                await wait_until(lambda: bool(seen))
                gate.open.set()
        assert seen == [JobStatus.RUNNING, JobStatus.COMPLETED]


async def test_list_jobs_filters_and_pages(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Echo(), Gate()], workers=False) as rt:
        echo = await rt.enqueue_many("echo", [{"n": i} for i in range(7)])
        await rt.enqueue_many("gate", [{"n": i} for i in range(3)])
        await rt.request_job_cancel("echo", echo[0].id)
        pages: list[list[str]] = []
        cursor = None
        while True:
            page = await rt.list_jobs(queue="echo", limit=3, cursor=cursor)
            if not page:
                break
            pages.append([j.id for j in page])
            cursor = page[-1].id
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [i for p in pages for i in p] == [j.id for j in reversed(echo)]  # newest first
        cancelled = await rt.list_jobs(status="cancelled")
        assert [j.id for j in cancelled] == [echo[0].id]
        queued_echo = await rt.list_jobs(queue="echo", status=JobStatus.QUEUED)
        assert len(queued_echo) == 6
        assert len(await rt.list_jobs()) == 10


async def test_rerun_puts_a_finished_job_back(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Echo()]) as rt:
        job = await rt.enqueue("echo", {"n": 1})
        await rt.wait(job.id, timeout=10)
        again = await rt.rerun(job.id, by="operator")
        assert again.status is JobStatus.QUEUED
        assert (again.attempts, again.result) == (0, None)
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.COMPLETED
        history = await rt.history(job.id)
        assert [h.status for h in history].count(JobStatus.COMPLETED) == 2
        assert any(h.message == "rerun by operator" for h in history)


async def test_rerun_of_a_pending_job_is_refused(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Gate()], workers=False) as rt:
        job = await rt.enqueue("gate", {})
        with pytest.raises(InvalidTransition, match="queued"):
            await rt.rerun(job.id)


async def test_module_helpers_work_from_nested_functions(db_path: Path) -> None:
    def helper(n: int) -> None:
        report_progress(n, 10, f"step {n}")

    class Nested(Queue):
        name = "nested"

        async def handle_item(self, item: Any) -> str:
            for n in range(1, 4):
                helper(n)
            return current_job().queue

    async with Runtime(db_path, queues=[Nested()]) as rt:
        job = await rt.enqueue("nested", None)
        done = await rt.wait(job.id, timeout=10)
        assert done.result == "nested"
        assert done.progress == Progress(current=3, total=10, message="step 3")


async def test_sync_handler_runs_in_a_worker_thread(db_path: Path) -> None:
    import threading

    main_thread = threading.get_ident()

    class Threaded(Queue):
        name = "threaded"
        worker_count = 2

        def handle_item(self, item: Any) -> dict[str, Any]:
            self.report_progress(current=1, total=1, message="in thread")
            return {"thread": threading.get_ident() != main_thread, "job": current_job().id}

    async with Runtime(db_path, queues=[Threaded()]) as rt:
        job = await rt.enqueue("threaded", {})
        done = await rt.wait(job.id, timeout=10)
        assert done.result == {"thread": True, "job": job.id}
        assert done.progress.message == "in thread"


async def test_progress_is_written_while_the_job_runs(db_path: Path) -> None:
    release = anyio.Event()

    class Reporting(Queue):
        name = "reporting"

        async def handle_item(self, item: Any) -> None:
            for i in range(100):
                self.report_progress(current=i + 1, total=100)
            await release.wait()

    async with Runtime(db_path, queues=[Reporting()], progress_interval=0.01) as rt:
        stream = rt.events()
        job = await rt.enqueue("reporting", {})
        with anyio.fail_after(10):
            event = await next_event(stream, job_id=job.id, status=JobStatus.RUNNING)
            while event.progress.current != 100:
                event = await next_event(stream, job_id=job.id)

            # The coalesced write lands shortly after the last report.
            async def written() -> bool:
                return (await rt.job_status("reporting", job.id)).progress.current == 100

            await wait_until(written)
        release.set()
        await rt.wait(job.id, timeout=10)


async def test_defer_runs_fire_and_forget_calls(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ran = anyio.Event()
    sync_ran: list[int] = []

    async def notify(value: int) -> None:
        assert value == 7
        ran.set()

    def broken() -> None:
        raise RuntimeError("deferred boom")

    async with Runtime(db_path, queues=[]) as rt:
        rt.defer(broken)
        rt.defer(sync_ran.append, 3)
        rt.defer(notify, 7)
        with anyio.fail_after(10):
            await ran.wait()
            await wait_until(lambda: bool(sync_ran) and "deferred boom" in caplog.text)
    assert sync_ran == [3]


async def test_runtime_must_be_entered(db_path: Path) -> None:
    rt = Runtime(db_path, queues=[Echo()])
    with pytest.raises(RuntimeClosed):
        await rt.enqueue("echo", {})
    async with rt:
        pass
    with pytest.raises(RuntimeClosed):
        await rt.enqueue("echo", {})
