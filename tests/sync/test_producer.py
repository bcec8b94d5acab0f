"""conveyor.sync.Producer: enqueues straight into a SQLite file or PostgreSQL, without a
server and without an event loop in the caller, writing exactly what Runtime.enqueue
writes; worker processes pick the jobs up."""

from __future__ import annotations

import inspect
import math
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import (
    ConveyorError,
    JobStatus,
    Queue,
    Runtime,
    RuntimeClosed,
    StoreUnavailable,
    ValidationError,
)
from conveyor.sync import Producer

from ..conftest import WORKER_APP
from ..worker_app import QUEUES
from .conftest import Process, in_threads

pytestmark = [pytest.mark.timeout(120)]


class Typed(Queue[dict[str, int]]):
    name = "typed"
    max_attempts = 3
    timeout = 60


def test_a_worker_process_runs_what_the_producer_enqueues(location: str, worker: Process) -> None:
    with Producer(location, QUEUES) as producer:
        job = producer.enqueue("work", {"sleep": 0}, created_by="script")
        assert (job.status, job.created_by) == (JobStatus.QUEUED, "script")
        many = producer.enqueue_many("work", [{"sleep": 0}] * 5, priority=2)
        assert [j.priority for j in many] == [2] * 5
        for j in [job, *many]:
            done = producer.wait(j.id, timeout=30)
            assert done.status is JobStatus.COMPLETED
            assert done.result == {"pid": worker.proc.pid}  # run in the other process
        assert producer.job(job.id).status is JobStatus.COMPLETED


def test_on_postgresql_a_listening_worker_hears_of_the_job_at_once(
    pg_url_sync: str,
) -> None:
    # The worker polls once a minute: only the enqueue's NOTIFY can wake it in time.
    worker = Process(str(WORKER_APP), pg_url_sync, "--poll-interval", "60")
    try:
        worker.line(lambda line: line == "ready", timeout=60)
        with Producer(pg_url_sync, QUEUES) as producer:
            started = time.monotonic()
            job = producer.enqueue("work", {"sleep": 0})
            assert producer.wait(job.id, timeout=20).status is JobStatus.COMPLETED
            assert time.monotonic() - started < 20
    finally:
        worker.stop()


@pytest.fixture
def pg_url_sync(location: str, store_kind: str) -> str:
    if store_kind != "postgres":
        pytest.skip("NOTIFY is PostgreSQL's")
    return location


def stored(location: str, job_ids: list[str]) -> list[tuple[Any, ...]]:
    """Each job's row and history, as a Runtime reads them back, without what differs
    between two enqueues of the same job (ids, times, seqs)."""

    async def read() -> list[tuple[Any, ...]]:
        async with Runtime(location, [Typed(), *QUEUES], workers=False) as rt:
            rows = []
            for job_id in job_ids:
                job = await rt.job(job_id)
                history = [(h.status, h.message) for h in await rt.history(job_id)]
                ahead = None
                if job.scheduled_at is not None:
                    ahead = round((job.scheduled_at - job.created_at).total_seconds())
                rows.append(
                    (
                        job.queue,
                        job.status,
                        job.payload,
                        job.priority,
                        job.max_attempts,
                        job.timeout,
                        job.created_by,
                        job.meta,
                        job.tags,
                        ahead,
                        history,
                    )
                )
            return rows

    return anyio.run(read)


def test_the_producer_writes_exactly_what_the_runtime_writes(location: str) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("typed", {"a": 1}), {}),
        (("typed", {"a": 2}), {"priority": -5, "created_by": "cron", "max_attempts": 7}),
        (("typed", {"a": 3}), {"delay": timedelta(minutes=5), "timeout": 2.5}),
        (("typed", {"a": 4}), {"at": datetime.now(UTC) + timedelta(hours=2)}),
        (("typed", {"a": 5}), {"meta": {"tenant": "acme", "ref": "é 1"}, "tags": ("b", "a", "b")}),
        (("work", [1, "two"]), {"unique_key": "k"}),
    ]

    async def by_runtime() -> list[str]:
        async with Runtime(location, [Typed(), *QUEUES], workers=False) as rt:
            return [(await rt.enqueue(*args, **kwargs)).id for args, kwargs in calls]

    via_runtime = anyio.run(by_runtime)
    with Producer(location, [Typed(), *QUEUES]) as producer:
        via_producer = [producer.enqueue(*args, **kwargs).id for args, kwargs in calls]
        # unique_key: while the runtime's job is unfinished, the producer gets it back.
        assert via_producer[-1] == via_runtime[-1]
        many = producer.enqueue_many(
            "typed", [{"a": 5}, {"a": 6}], created_by="m", meta={"k": "v"}, tags=["t"]
        )
        assert producer.job(via_producer[-2]).tags == ["b", "a"]  # order kept, a repeat once
    assert stored(location, via_producer) == stored(location, via_runtime)
    [five, six] = stored(location, [j.id for j in many])
    assert (five[2], six[2], five[6]) == ({"a": 5}, {"a": 6}, "m")
    assert (five[7], five[8]) == (six[7], six[8]) == ({"k": "v"}, ["t"])


def test_what_the_runtime_refuses_the_producer_refuses_alike(location: str) -> None:
    bad: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("enqueue", ("typed", {"a": "not an int"}), {}),
        ("enqueue", ("typed", {"a": math.nan}), {}),
        ("enqueue", ("typed", {"a": 1}), {"delay": math.inf}),
        ("enqueue", ("typed", {"a": 1}), {"delay": 1, "at": datetime.now(UTC)}),
        ("enqueue", ("typed", {"a": 1}), {"priority": "high"}),
        ("enqueue", ("typed", {"a": 1}), {"created_by": "\x00"}),
        ("enqueue", ("typed", {"a": 1}), {"unique_key": ""}),
        ("enqueue", ("typed", {"a": 1}), {"max_attempts": 0}),
        ("enqueue", ("typed", {"a": 1}), {"at": datetime(2026, 1, 1)}),  # naive
        ("enqueue", ("work", {"x": object()}), {}),
        ("enqueue", ("work", "x" * (2 << 20)), {}),  # over the payload limit
        ("enqueue", (5, {}), {}),
        ("enqueue", ("nope", {}), {}),
        ("enqueue", ("typed", {"a": 1}), {"meta": {"a b": "v"}}),
        ("enqueue", ("typed", {"a": 1}), {"meta": {"k": 1}}),
        ("enqueue", ("typed", {"a": 1}), {"meta": {"k": "x" * (64 << 10)}}),  # over meta_bytes
        ("enqueue", ("typed", {"a": 1}), {"tags": "import"}),
        ("enqueue", ("typed", {"a": 1}), {"tags": ["\x00"]}),
        ("enqueue_many", ("typed", [{"a": 1}]), {"tags": [1]}),
        ("enqueue_many", ("typed", [{"a": 1}, {"a": "b"}]), {}),  # none of them, then
        ("job", ("",), {}),
        ("job", ("missing",), {}),
        ("wait", ("missing",), {"timeout": -1}),
    ]

    async def by_runtime() -> list[str]:
        refusals = []
        async with Runtime(location, [Typed(), *QUEUES], workers=False) as rt:
            for op, args, kwargs in bad:
                try:
                    await getattr(rt, op)(*args, **kwargs)
                except ConveyorError as exc:
                    refusals.append(f"{type(exc).__name__}: {exc}")
            assert await rt.list_jobs() == []  # nothing stored
        return refusals

    expected = anyio.run(by_runtime)
    assert len(expected) == len(bad)
    with Producer(location, [Typed(), *QUEUES]) as producer:
        for (op, args, kwargs), refusal in zip(bad, expected, strict=True):
            with pytest.raises(ConveyorError) as refused:
                getattr(producer, op)(*args, **kwargs)
            assert f"{type(refused.value).__name__}: {refused.value}" == refusal
    assert anyio.run(_count, location) == 0


async def _count(location: str) -> int:
    async with Runtime(location, workers=False) as rt:
        return sum(sum(c.values()) for c in (await rt.queue_counts()).values())


def test_many_threads_share_one_producer_and_every_job_is_stored_once(location: str) -> None:
    threads, each = 8, 25
    with Producer(location, QUEUES) as producer:

        def enqueue(n: int) -> list[str]:
            ids = []
            for i in range(each):
                if i % 5 == 4:  # some as a batch
                    batch = producer.enqueue_many("work", [{"n": n, "i": i, "b": 0}] * 2)
                    ids += [j.id for j in batch]
                else:
                    ids.append(producer.enqueue("work", {"n": n, "i": i}).id)
            return ids

        ids = in_threads(threads, enqueue)
    flat = [job_id for per in ids for job_id in per]
    assert len(flat) == len(set(flat)) == threads * (each + each // 5)

    async def listed() -> list[str]:
        async with Runtime(location, workers=False) as rt:
            return [j.id for j in await rt.list_jobs(limit=1000)]

    assert sorted(anyio.run(listed)) == sorted(flat)


def test_the_producers_enqueues_take_the_runtimes_options() -> None:
    # Every option the Runtime's enqueues take (meta and tags included), with its
    # default, but its transaction: the producer's loop is its own, not the caller's.
    for op in ("enqueue", "enqueue_many", "job", "wait"):
        mine = inspect.signature(getattr(Producer, op)).parameters
        runtime = dict(inspect.signature(getattr(Runtime, op)).parameters)
        runtime.pop("connection", None)
        assert list(mine) == list(runtime), op
        for param, spec in runtime.items():
            assert (mine[param].default, mine[param].kind) == (spec.default, spec.kind), op


def test_the_constructor_and_a_closed_producer_refuse(location: str) -> None:
    for args, kwargs, field in [
        ((location, [object()]), {}, "name"),
        ((location, QUEUES), {"call_timeout": 0}, "call_timeout"),
        ((location, QUEUES), {"limits": "big"}, "limits"),
        ((location, [*QUEUES, *QUEUES]), {}, "two queues"),
    ]:
        with pytest.raises(ValidationError, match=field):
            Producer(*args, **kwargs)
    producer = Producer(location, QUEUES)
    producer.close()
    producer.close()  # twice is fine
    with pytest.raises(RuntimeClosed):
        producer.enqueue("work", {})
    # No loop thread is left behind by any of them.
    assert not [t for t in threading.enumerate() if t.name == "conveyor-producer"]


def test_a_producer_left_open_does_not_hold_up_the_exit_and_its_job_is_stored(
    location: str,
) -> None:
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from worker_app import QUEUES\n"
        "from conveyor.sync import Producer\n"
        f"producer = Producer({location!r}, QUEUES)\n"
        "print(producer.enqueue('work', {'left': 'open'}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    job_id = done.stdout.strip()

    async def read() -> Any:
        async with Runtime(location, workers=False) as rt:
            return (await rt.job(job_id)).payload

    assert anyio.run(read) == {"left": "open"}


def test_a_call_is_bounded_by_the_call_timeout(tmp_path: Path) -> None:
    # A real lock: another connection holds the SQLite file's write lock, so the
    # enqueue waits for it; call_timeout ends the wait, saying the outcome is unknown.
    db = tmp_path / "jobs.db"
    with Producer(db, QUEUES, call_timeout=0.5) as producer:
        producer.enqueue("work", {"first": True})
        holder = sqlite3.connect(db, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as timed_out:
                producer.enqueue("work", {"second": True})
            assert timed_out.value.outcome_unknown
            assert "call_timeout" in str(timed_out.value)
            assert 0.5 <= time.monotonic() - started < 3
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert producer.enqueue("work", {"third": True}).status is JobStatus.QUEUED
