"""The workers view with real worker processes on both stores: every runtime that runs
workers is listed with its queues and heartbeat age, leaves when it stops, and one
killed with SIGKILL is shown lost and its jobs rescued by another worker within 2 s
(not after the 30 s lease)."""

from __future__ import annotations

import os
import signal
import socket
import time

import anyio
import pytest

from conveyor import JobStatus, Runtime, WorkerState

from ..conftest import Worker, wait_until
from ..worker_app import QUEUES, Work
from .test_crash_recovery import running_elsewhere

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
SERVED = {q.name: q.worker_count for q in QUEUES}


async def listed(rt: Runtime, worker: Worker) -> WorkerState | None:
    return next((w for w in await rt.workers() if w.pid == worker.pid), None)


async def test_workers_are_listed_and_a_killed_one_is_lost_and_rescued_at_once(
    location: str, spawn: type[Worker]
) -> None:
    async with Runtime(location, queues=[Work()], workers=False) as rt:
        victim = spawn()  # the default 30 s lease
        with anyio.fail_after(30):
            await wait_until(lambda: registered(rt, victim), 0.05)
        job = await rt.enqueue("work", {"block": True})
        with anyio.fail_after(30):
            await running_elsewhere(rt, job.id)
        rescuer = spawn()
        with anyio.fail_after(30):
            await wait_until(lambda: registered(rt, rescuer), 0.05)
        shown = await listed(rt, victim)
        assert shown is not None
        assert (shown.host, shown.queues, shown.lost) == (socket.gethostname(), SERVED, False)
        assert shown.heartbeat_age < 30
        assert shown.id.startswith(f"{socket.gethostname()}/{victim.pid}/")
        assert os.getpid() not in {w.pid for w in await rt.workers()}  # workers=False

        victim.signal(signal.SIGKILL)
        with anyio.fail_after(10):
            await victim.exited()
        killed = time.monotonic()
        with anyio.fail_after(2):  # the bar: not the 30 s lease

            async def rescued() -> bool:
                history = await rt.history(job.id)
                return any("worker lost" in (h.message or "") for h in history)

            await wait_until(rescued, 0.02)
        took = time.monotonic() - killed
        lost = await listed(rt, victim)
        assert lost is not None
        assert lost.lost
        with anyio.fail_after(10):  # the rescuer runs it now
            await running_elsewhere(rt, job.id, run=2)
        assert took < 2

        rescuer.signal(signal.SIGTERM)  # a clean stop leaves the registry
        with anyio.fail_after(30):
            await rescuer.exited()
        assert await listed(rt, rescuer) is None
        assert (await rt.job(job.id)).status in (JobStatus.QUEUED, JobStatus.RUNNING)


async def registered(rt: Runtime, worker: Worker) -> bool:
    return await listed(rt, worker) is not None
