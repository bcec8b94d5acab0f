"""kill -9 soak: rounds of SIGKILLs of worker processes while jobs with progress run.
Nothing is lost, every job ends in one terminal state, and no job runs again unless a
kill interrupted it: each extra run of a job follows a rescue of it from a lost worker
(a run in progress, or one whose outcome the killed process had not yet written)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import anyio
import pytest

from conveyor import JobStatus, Runtime

from ..conftest import wait_until
from .conftest import Child, scaled
from .worker import Soak

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(scaled(180, 1800))]

JOBS = scaled(2000, 10_000)
KILLS = scaled(5, 25)
WORKERS = 2  # processes at once


async def test_sigkill_rounds_lose_nothing(
    location: str, children: Callable[..., Child], figure: Callable[..., None]
) -> None:
    rng = random.Random(11)
    start = time.monotonic()
    async with Runtime(location, queues=[Soak()], workers=False) as observer:
        jobs = await observer.enqueue_many(
            "soak", [{"steps": 3, "every": 0.002} for _ in range(JOBS)]
        )
        ids = {job.id for job in jobs}
        workers = [children("worker.py", location, "--lease-ttl", "5") for _ in range(WORKERS)]
        kills = 0
        with anyio.fail_after(scaled(150, 1700)):
            while kills < KILLS:
                # Kill while work is in flight: after some jobs finished since the last kill.
                target = (kills + 1) * JOBS // (KILLS + 2)

                async def enough_done(target: int = target) -> bool:
                    counts = (await observer.queue_counts())["soak"]
                    return counts[JobStatus.COMPLETED] >= target

                await wait_until(enough_done, 0.05)
                victim = workers.pop(rng.randrange(len(workers)))
                victim.kill()
                kills += 1
                workers.append(children("worker.py", location, "--lease-ttl", "5"))

            async def all_ended() -> bool:
                counts = (await observer.queue_counts())["soak"]
                return sum(counts[s] for s in JobStatus if s.is_terminal) == JOBS

            await wait_until(all_ended, 0.1)
        elapsed = time.monotonic() - start
        ended = []
        cursor = None
        while page := await observer.list_jobs(queue="soak", limit=1000, cursor=cursor):
            ended += page
            cursor = page[-1].id
        runs = Counter[str]()
        rescues = Counter[str]()
        for job in ended:
            history = await observer.history(job.id)
            runs[job.id] = sum(h.status is JobStatus.RUNNING for h in history)
            rescues[job.id] = sum("worker lost" in (h.message or "") for h in history)
            terminal = [h for h in history if h.status.is_terminal]
            assert len(terminal) == 1, (job.id, history)  # one terminal state per job
            # No run without a reason: one, plus one after each rescue from a dead worker.
            assert runs[job.id] == 1 + rescues[job.id] - (job.status is JobStatus.FAILED), (
                job.id,
                history,
            )
    assert {job.id for job in ended} == ids  # nothing lost
    statuses = Counter(job.status for job in ended)
    lost_thrice = [j for j in ended if j.status is JobStatus.FAILED]
    assert all(j.error == "worker lost (3 times)" for j in lost_thrice)
    reruns = sum(runs.values()) - len(ended)
    figure(
        jobs=JOBS,
        kills=KILLS,
        lost=len(ids) - len(ended),
        completed=statuses[JobStatus.COMPLETED],
        failed_worker_lost=len(lost_thrice),
        reruns=reruns,
        reruns_per_kill=round(reruns / KILLS, 1),
        seconds=round(elapsed, 1),
    )
