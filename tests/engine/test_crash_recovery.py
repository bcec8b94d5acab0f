"""Real worker processes killed with SIGKILL, stopped, restarted; two processes, one file."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime
from conveyor.store import ClaimParams, NewJob, store_at

from ..conftest import Worker, next_event, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


class Work(Queue):
    """The same queue as tests/worker_app.py, for enqueueing and for rescuing here."""

    name = "work"
    worker_count = 4

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid()}


class SyncWork(Queue):
    name = "sync_work"

    def handle_item(self, item: Any) -> None:
        raise AssertionError("only the worker process runs these")


async def running_elsewhere(rt: Runtime, job_id: str, queue: str = "work", run: int = 1) -> None:
    """Wait (bounded by the caller) until another process is inside the job's handler.

    Its RUNNING transition reaches this process through the store; its first progress
    report ("started", sent from inside the handler) lands with the coalesced write.
    """
    async with rt.events(job_id=job_id) as stream:
        if (await rt.job_status(queue, job_id)).status is not JobStatus.RUNNING:
            await next_event(stream, status=JobStatus.RUNNING)

    async def started() -> bool:
        # The run-th claim's handler reported: its RUNNING row is the latest, and the
        # progress is its own (a claim clears the previous run's).
        runs = [h.status for h in await rt.history(job_id)]
        job = await rt.job_status(queue, job_id)
        return (
            runs.count(JobStatus.RUNNING) == run
            and runs[-1] is JobStatus.RUNNING
            and job.progress.message == "started"
        )

    await wait_until(started)


async def test_job_survives_sigkill_and_runs_on_restart(location: str, spawn: type[Worker]) -> None:
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
        job = await client.enqueue("work", {"block": True})
        victim = spawn()
        with anyio.fail_after(30):
            await running_elsewhere(client, job.id)
        victim.signal(signal.SIGKILL)
        with anyio.fail_after(10):
            assert await victim.exited() == -signal.SIGKILL
        assert (await client.job_status("work", job.id)).status is JobStatus.RUNNING

    # The same machine restarts a worker: it sees the dead owner at once, no lease wait.
    async with Runtime(location, queues=[Work(), SyncWork()], lease_ttl=3600) as rt:
        with anyio.fail_after(10):
            done = await rt.wait(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == {"pid": os.getpid()}
        assert (done.attempts, done.max_attempts) == (1, 1)  # the lost run was no attempt
        history = await rt.history(job.id)
        assert [h.status for h in history] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        assert "worker lost" in (history[2].message or "")


async def test_expired_lease_is_rescued_and_the_stale_worker_writes_nothing(
    location: str, spawn: type[Worker]
) -> None:
    """A frozen worker (SIGSTOP) keeps its pid but stops renewing its lease."""
    async with Runtime(
        location, queues=[Work(), SyncWork()], workers=False, lease_ttl=1.0
    ) as client:
        job = await client.enqueue("work", {"sleep": 1.5})
        stale = spawn("--lease-ttl", "1.0")
        with anyio.fail_after(30):
            await running_elsewhere(client, job.id)
        stale.signal(signal.SIGSTOP)
    try:
        async with Runtime(location, queues=[Work(), SyncWork()], lease_ttl=1.0) as rt:
            with anyio.fail_after(30):
                done = await rt.wait(job.id)
            assert done.status is JobStatus.COMPLETED
            assert done.result == {"pid": os.getpid()}
            assert any("worker lost" in (h.message or "") for h in await rt.history(job.id))
            # Wake the stale worker: its handler finishes at once (its sleep is long over)
            # and its shutdown flushes the finish write, which its lost token fences off.
            stale.signal(signal.SIGCONT)
            stale.signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await stale.exited()
            final = await rt.job_status("work", job.id)
            assert final.result == {"pid": os.getpid()}  # not overwritten by the stale pid
            statuses = [h.status for h in await rt.history(job.id)]
            assert statuses.count(JobStatus.COMPLETED) == 1
    finally:
        stale.signal(signal.SIGCONT)


async def test_job_orphaned_three_times_fails_with_worker_lost(
    location: str, spawn: type[Worker]
) -> None:
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
        job = await client.enqueue("work", {"block": True})
    for run in (1, 2, 3):
        # Each new worker first rescues the previous one's job, then runs it again.
        async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
            victim = spawn()
            with anyio.fail_after(30):
                await running_elsewhere(client, job.id, run=run)
            victim.signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await victim.exited()
    async with Runtime(location, queues=[Work(), SyncWork()]) as rt:
        done = await rt.job_status("work", job.id)
        assert done.status is JobStatus.FAILED
        assert done.error == "worker lost (3 times)"
        assert done.attempts == 1  # lost runs count as orphanings, not attempts


async def test_two_processes_share_one_file(location: str, spawn: type[Worker]) -> None:
    worker = spawn()
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
        jobs = await client.enqueue_many("work", [{"sleep": 0} for _ in range(20)])
        with anyio.fail_after(30):
            results = [await client.wait(j.id) for j in jobs]
        assert {r.status for r in results} == {JobStatus.COMPLETED}
        assert {r.result["pid"] for r in results} == {worker.pid}

        # Cancel, from here, a job running in the other process.
        blocked = await client.enqueue("work", {"block": True})
        with anyio.fail_after(30):
            await running_elsewhere(client, blocked.id)
        await client.request_job_cancel("work", blocked.id)
        with anyio.fail_after(10):
            assert (await client.wait(blocked.id)).status is JobStatus.CANCELLED

        # A sync handler in the other process stops at its next check_cancelled().
        sync_job = await client.enqueue("sync_work", {"seconds": 3600})
        with anyio.fail_after(30):
            await running_elsewhere(client, sync_job.id, "sync_work")
        await client.request_job_cancel("sync_work", sync_job.id)
        with anyio.fail_after(10):
            assert (await client.wait(sync_job.id)).status is JobStatus.CANCELLED


async def test_progress_of_a_job_another_process_runs_reaches_subscribers_here(
    location: str, spawn: type[Worker]
) -> None:
    """What `conveyor serve` beside a worker fleet relies on: reports made in the worker
    process arrive here as progress events, in order, while the job runs."""
    spawn()
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as watcher:
        async with watcher.events() as stream:
            job = await watcher.enqueue("work", {"steps": 4, "every": 0.6})
            steps: list[int | float] = []
            with anyio.fail_after(30):
                async for event in stream:
                    if event.job_id != job.id:
                        continue
                    if event.status is JobStatus.COMPLETED:
                        break
                    message = event.progress.message or ""
                    if event.status is JobStatus.RUNNING and message.startswith("step"):
                        steps.append(event.progress.current)
    assert steps == sorted(steps)  # in order
    assert {1, 2, 3} <= set(steps)  # every report made well before the end, live


async def test_sigterm_requeues_running_jobs_after_the_grace_period(
    location: str, spawn: type[Worker]
) -> None:
    worker = spawn("--grace", "0.5")
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
        job = await client.enqueue("work", {"block": True})
        quick = await client.enqueue("work", {"sleep": 0.2})
        with anyio.fail_after(30):
            await running_elsewhere(client, job.id)
        worker.signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await worker.exited() == 0
        assert "stopped" in worker.output()
        requeued = await client.job_status("work", job.id)
        assert requeued.status is JobStatus.QUEUED
        history = await client.history(job.id)
        assert history[-1].message == "requeued: worker shutting down"
        assert (await client.job_status("work", quick.id)).status is JobStatus.COMPLETED


async def test_second_sigterm_stops_at_once(location: str, spawn: type[Worker]) -> None:
    worker = spawn("--grace", "3600")
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as client:
        job = await client.enqueue("work", {"block": True})
        with anyio.fail_after(30):
            await running_elsewhere(client, job.id)
        worker.signal(signal.SIGTERM)
        with anyio.fail_after(10):
            await wait_until(lambda: "stopping" in _peek(worker))
        worker.signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await worker.exited() == 0
        assert (await client.job_status("work", job.id)).status is JobStatus.QUEUED


_seen: dict[int, str] = {}


def _peek(worker: Worker) -> str:
    """Read what the worker printed so far (non-blocking)."""
    stdout = worker.proc.stdout
    assert stdout is not None
    os.set_blocking(stdout.fileno(), False)
    chunk = stdout.read() or b""
    _seen[worker.pid] = _seen.get(worker.pid, "") + chunk.decode()
    return _seen[worker.pid]


async def test_leaving_the_block_lets_short_jobs_finish_and_requeues_long_ones(
    location: str,
) -> None:
    started = anyio.Event()

    class Mixed(Queue):
        name = "mixed"
        worker_count = 2

        async def handle_item(self, item: dict[str, Any]) -> str:
            started.set()
            await anyio.sleep(item["sleep"])
            return "finished"

    async with Runtime(location, queues=[Mixed()], shutdown_grace=0.5) as rt:
        short = await rt.enqueue("mixed", {"sleep": 0.1})
        long = await rt.enqueue("mixed", {"sleep": 3600})
        with anyio.fail_after(10):
            await started.wait()
            await wait_until(lambda: len(rt._engine.running) == 2)
    async with Runtime(location, queues=[Mixed()], workers=False) as rt:
        assert (await rt.job_status("mixed", short.id)).status is JobStatus.COMPLETED
        requeued = await rt.job_status("mixed", long.id)
        assert requeued.status is JobStatus.QUEUED
        assert (await rt.history(long.id))[-1].message == "requeued: worker shutting down"


async def test_a_live_worker_keeps_its_lease_past_the_ttl(location: str) -> None:
    """Heartbeats renew the lease: another worker on the file must not rescue the job."""
    release = anyio.Event()
    runs: list[str] = []

    class Long(Queue):
        name = "long"

        async def handle_item(self, item: Any) -> None:
            runs.append("run")
            await release.wait()

    async with (
        Runtime(location, queues=[Long()], lease_ttl=0.3) as a,
        Runtime(location, queues=[Long()], lease_ttl=0.3) as b,
    ):
        job = await a.enqueue("long", {})
        with anyio.fail_after(10):
            await wait_until(lambda: len(runs) == 1)
            # Four lease lengths pass; b's rescue loop runs every 0.15 s meanwhile.
            async with b.events(job_id=job.id) as stream:
                running_seq = (await b.history(job.id))[-1].seq
                with anyio.move_on_after(1.2):
                    async for event in stream:
                        if event.seq > running_seq:
                            raise AssertionError(f"the job changed while its worker ran: {event}")
            release.set()
            done = await a.wait(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 1
    assert runs == ["run"]


async def test_a_lease_the_worker_does_not_know_it_holds_expires(location: str) -> None:
    """A claim can commit while its answer is lost with the connection (PostgreSQL): the
    worker then holds a lease it does not know of. Its heartbeat must not keep that one
    alive, so the job comes back and runs. The lost answer is staged by claiming through
    a second connection under the runtime's own owner id (no other way to reach it)."""
    release = anyio.Event()

    class Long(Queue):
        name = "long"
        worker_count = 2

        async def handle_item(self, item: Any) -> str:
            if item.get("hold"):
                await release.wait()
            return "ran"

    rt = Runtime(location, queues=[Long()], lease_ttl=0.6)
    side = store_at(location)
    await side.open("side")
    try:
        await side.writes.jobs_insert(
            [NewJob(id="lost", queue="long", status=JobStatus.QUEUED, payload=b"{}", created_at=0)]
        )
        now = time.time()
        claim = ClaimParams(
            queue="long",
            limit=1,
            owner=rt._engine.owner,
            token="answer-lost",
            now=now,
            lease_expires_at=now + 0.6,
        )
        assert [j.id for j in (await side.writes.jobs_claim(claim))[0]] == ["lost"]
    finally:
        await side.close()
    async with rt:
        held = await rt.enqueue("long", {"hold": True})  # so that heartbeats run
        with anyio.fail_after(15):
            done = await rt.wait("lost")
        assert done.status is JobStatus.COMPLETED
        assert done.attempts == 1
        assert "lease expired" in str((await rt.history("lost"))[2].message)
        assert (await rt.job_status("long", held.id)).status is JobStatus.RUNNING
        release.set()
