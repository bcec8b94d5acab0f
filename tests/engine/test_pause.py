"""Fleet-wide pause, with real worker processes on both stores: a queue paused in one
process starts no job in another once the change is heard (a notification on
PostgreSQL, a poll on SQLite), while its other queues go on; the pause outlives a
restart; resume starts the waiting jobs everywhere."""

from __future__ import annotations

import signal

import anyio
import pytest

from conveyor import JobStatus, QueueNotFound, Runtime, ValidationError

from ..conftest import Worker
from ..worker_app import SyncWork, Work

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# How long another process may take to hear of a pause: a poll interval (0.1 s in the
# worker) or a notification; the test allows ten times that.
HEARD_WITHIN = 1.0


async def other_queue_runs(rt: Runtime) -> None:
    """A job of the worker's unpaused queue runs to its end: the worker is up and claims."""
    probe = await rt.enqueue("sync_work", {"seconds": 0})
    with anyio.fail_after(20):
        assert (await rt.wait(probe.id)).status is JobStatus.COMPLETED


async def test_a_pause_stops_starts_in_other_processes_and_outlives_restarts(
    location: str, spawn: type[Worker]
) -> None:
    async with Runtime(location, queues=[Work(), SyncWork()], workers=False) as rt:
        worker = spawn()
        await other_queue_runs(rt)

        paused = await rt.pause("work", by="ops")
        assert (paused.name, paused.paused, paused.paused_by) == ("work", True, "ops")
        assert paused.paused_at is not None
        await anyio.sleep(HEARD_WITHIN)  # the worker hears of it meanwhile
        waiting = await rt.enqueue("work", {})  # enqueues are still taken
        await other_queue_runs(rt)
        await anyio.sleep(HEARD_WITHIN)  # a window in which a start would show
        assert (await rt.job(waiting.id)).status is JobStatus.QUEUED

        worker.signal(signal.SIGKILL)
        with anyio.fail_after(10):
            await worker.exited()
        spawn()  # reads the pause before it claims anything
        await other_queue_runs(rt)
        assert (await rt.job(waiting.id)).status is JobStatus.QUEUED
        [state] = [s for s in await rt.queue_states() if s.name == "work"]
        assert state.paused
        assert state.counts[JobStatus.QUEUED] == 1

        resumed = await rt.resume("work")
        assert (resumed.paused, resumed.paused_at, resumed.paused_by) == (False, None, None)
        with anyio.fail_after(20):
            assert (await rt.wait(waiting.id)).status is JobStatus.COMPLETED


async def test_a_paused_queue_lets_its_running_jobs_finish(location: str) -> None:
    async with Runtime(location, queues=[Work()]) as rt:
        running = await rt.enqueue("work", {"steps": 3, "every": 0.05})
        async with rt.events(job_id=running.id) as events:
            async for event in events:
                if event.status is JobStatus.RUNNING:
                    break
        await rt.pause("work")
        with anyio.fail_after(10):
            assert (await rt.wait(running.id)).status is JobStatus.COMPLETED
        again = await rt.pause("work", by="someone else")  # a second pause keeps the first
        assert again.paused_by is None


async def test_pause_checks_what_it_is_given(location: str) -> None:
    async with Runtime(location, queues=[Work()]) as rt:
        with pytest.raises(QueueNotFound):
            await rt.pause("nope")
        with pytest.raises(ValidationError, match="queue"):
            await rt.pause("")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="by"):
            await rt.pause("work", by=7)  # type: ignore[arg-type]
        with pytest.raises(QueueNotFound):
            await rt.resume("nope")
