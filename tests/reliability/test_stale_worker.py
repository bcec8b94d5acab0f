"""A stale worker: SIGSTOPped past its lease while it runs a job, so another worker
rescues and finishes that job; then continued. Its late writes change nothing (0 rows:
the lease token fences them) and the rescued run's outcome stands."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio
import pytest

from conveyor import JobStatus, Runtime

from ..conftest import wait_until
from .conftest import Child
from .worker import Noop, Soak

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_a_stopped_worker_past_its_lease_writes_nothing(
    location: str, children: Callable[..., Child], figure: Callable[..., None]
) -> None:
    async with Runtime(location, queues=[Soak(), Noop()], workers=False) as observer:
        stale = children("worker.py", location, "--lease-ttl", "1.5")
        # Five progress reports 0.4 s apart: two seconds of work, begun before the stop.
        job = await observer.enqueue("soak", {"steps": 5, "every": 0.4})
        with anyio.fail_after(30):

            async def running_with_progress() -> bool:
                current = await observer.job(job.id)
                return current.status is JobStatus.RUNNING and current.progress.current >= 1

            await wait_until(running_with_progress, 0.02)
            stale.proc.send_signal(signal.SIGSTOP)
            rescuer = children("worker.py", location, "--lease-ttl", "1.5")
            done = await observer.wait(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == {"pid": rescuer.pid}
        history = await observer.history(job.id)
        stale.proc.send_signal(signal.SIGCONT)
        with anyio.fail_after(30):
            # The stale worker wakes, finds its lease gone (heartbeat) or has its outcome
            # fenced off by the token: either way it says so, and writes nothing.
            await wait_until(
                lambda: "lost its lease" in stale.output() or "not written" in stale.output(),
                0.05,
            )
        after = await observer.history(job.id)
        again = await observer.job(job.id)
    assert after == history  # 0 rows changed by the late worker
    assert (again.status, again.result) == (JobStatus.COMPLETED, {"pid": rescuer.pid})
    rescued = [h.message for h in history if h.status is JobStatus.QUEUED][1:]
    assert rescued
    assert "lease expired" in (rescued[0] or "")
    figure(late_rows_written=len(after) - len(history), outcome_kept="rescuer")
