"""One ordered event stream: a runtime publishes its own hot-path writes from what they
returned and everything else through the tail that reads the history back, and its
subscribers still see every history row of the file exactly once, in seq order, with the
progress the tail would have read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import Event, JobStatus, Queue, Runtime, report_progress

pytestmark = pytest.mark.anyio

JOBS = 120  # per runtime


class Flaky(Queue):
    name = "flaky"
    worker_count = 8
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 0.0)

    async def handle_item(self, item: dict[str, Any]) -> None:
        report_progress(7, 7, "done")
        if item["n"] % 5 == 0:
            # Fails twice: scheduled for a retry, which a write the tail reads back
            # (the promotion) queues again, then failed.
            raise RuntimeError("fails")


class Other(Queue):
    name = "other"
    worker_count = 8

    async def handle_item(self, item: dict[str, Any]) -> None:
        await anyio.lowlevel.checkpoint()


async def test_every_history_row_is_published_once_in_order_with_another_writer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shared.db"
    async with (
        Runtime(db, queues=[Flaky()], poll_interval=0.02) as here,
        Runtime(db, queues=[Other()], poll_interval=0.02) as there,
    ):
        stream = here.events(max_buffer=JOBS * 40)
        events: list[Event] = []

        async def produce(rt: Runtime, queue: str) -> list[str]:
            ids: list[str] = []
            for start in range(0, JOBS, 10):  # small batches, interleaved with the other
                jobs = await rt.enqueue_many(queue, [{"n": n} for n in range(start, start + 10)])
                ids += [j.id for j in jobs]
                await anyio.lowlevel.checkpoint()
            return ids

        ids: dict[str, list[str]] = {}
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def run(rt: Runtime, queue: str) -> None:
                    ids[queue] = await produce(rt, queue)

                tg.start_soon(run, here, "flaky")
                tg.start_soon(run, there, "other")
            every = ids["flaky"] + ids["other"]
            finished: set[str] = set()
            async for event in stream:
                events.append(event)
                if event.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    finished.add(event.job_id)
                    if len(finished) == len(every):
                        break

        history = {}
        for job_id in every:
            for entry in await here.history(job_id):
                history[entry.seq] = (job_id, entry.status)

    # Transitions are the first event of each seq; later ones of the same seq are
    # progress reports (they repeat the seq of their job's transition before them).
    transitions: dict[int, Event] = {}
    for e in events:
        transitions.setdefault(e.seq, e)
    assert list(transitions) == sorted(transitions), "transitions went back in seq order"
    for seq, first in transitions.items():
        again = [e for e in events if e.seq == seq][1:]
        # Only a running job reports progress, once per run here: nothing else repeats.
        assert len(again) <= (1 if first.status is JobStatus.RUNNING else 0), (first, again)
    for job_id in every:
        seqs = [e.seq for e in events if e.job_id == job_id]
        assert seqs == sorted(seqs), f"the events of {job_id} went back in seq order"
    assert sorted(transitions) == sorted(history), "a history row was skipped or invented"
    assert {s: (e.job_id, e.status) for s, e in transitions.items()} == history
    statuses = {e.status for e in transitions.values()}
    assert JobStatus.SCHEDULED in statuses  # the failed first attempts
    for e in transitions.values():
        if e.status is JobStatus.COMPLETED and e.queue == "flaky":
            # The progress written with the outcome, as the tail would read it back.
            assert (e.progress.current, e.progress.total, e.progress.message) == (7, 7, "done")


async def test_a_bulk_enqueue_bigger_than_a_buffer_reaches_a_reader_keeping_up(
    tmp_path: Path,
) -> None:
    """A write's rows published at once are at most a tail page: a subscriber whose
    buffer holds a page, and who reads as they come, is not dropped by a bulk enqueue of
    many pages."""
    async with Runtime(tmp_path / "bulk.db", queues=[Other()], workers=False) as rt:
        stream = rt.events(max_buffer=1000)
        with anyio.fail_after(60):
            jobs = await rt.enqueue_many("other", [{"n": n} for n in range(5000)])
            seen = [event.job_id async for event in _take(stream, len(jobs))]
        assert seen == [j.id for j in jobs]


async def _take(stream: Any, count: int) -> Any:
    async for event in stream:
        yield event
        count -= 1
        if count == 0:
            return
