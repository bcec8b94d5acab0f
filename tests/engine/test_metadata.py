"""A job's meta and tags through its life in a real runtime, on both stores: the handler
reads them from the claimed record (where tracing will read its context) on every
attempt, a retry and a rerun (one and many) keep them, and enqueue_many gives each job
the same."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import JobStatus, Queue, Runtime, current_job
from conveyor.backoff import constant

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
SEEN: list[tuple[int, dict[str, str], list[str]]] = []


class Flaky(Queue):
    """Fails its first attempt of each run, recording what each attempt saw."""

    name = "flaky"
    max_attempts = 2
    backoff = constant(0.01)

    async def handle_item(self, item: Any) -> str:
        job = current_job()
        SEEN.append((job.attempts, job.meta, job.tags))
        if job.attempts == 1:
            raise ConnectionError("first attempt fails")
        return "ok"


async def test_meta_is_read_by_every_attempt_and_kept_by_retries_and_reruns(
    location: str,
) -> None:
    SEEN.clear()
    async with Runtime(location, queues=[Flaky()]) as rt:
        job = await rt.enqueue("flaky", {}, meta=TRACE, tags=["import"])
        done = await rt.wait(job.id, timeout=20)
        assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)
        assert SEEN == [(1, TRACE, ["import"]), (2, TRACE, ["import"])]
        await rt.rerun(job.id, by="ops")
        again = await rt.wait(job.id, timeout=20)
        assert (again.status, again.meta, again.tags) == (JobStatus.COMPLETED, TRACE, ["import"])
        assert SEEN[2:] == [(1, TRACE, ["import"]), (2, TRACE, ["import"])]

        many = await rt.enqueue_many("flaky", [{}, {}], meta={"tenant": "acme"}, tags=["bulk"])
        for each in many:
            await rt.wait(each.id, timeout=20)
        assert await rt.rerun_matching(queue="flaky", statuses=["completed"]) == 3
        for each in many:
            rerun = await rt.wait(each.id, timeout=20)
            assert (rerun.meta, rerun.tags) == ({"tenant": "acme"}, ["bulk"])
        listed = await rt.list_jobs(tags=["bulk"], meta={"tenant": "acme"})
        assert sorted(j.id for j in listed) == sorted(j.id for j in many)
