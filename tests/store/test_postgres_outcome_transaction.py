"""A handler's writes and its job's outcome in one transaction (``conveyor.transaction()``,
PostgreSQL): kept both or neither, whatever the run's end: completion, an exception (and
the retry after it), a cancellation, a lost lease, a commit the server refuses, and real
worker processes killed with SIGKILL at random moments."""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import asyncpg
import pytest

from conveyor import (
    EventStream,
    JobStatus,
    NotInJob,
    Queue,
    Runtime,
    current_job,
    report_progress,
    transaction,
)

from ..conftest import POSTGRES_URL, Worker, next_event, wait_until
from ..worker_app import Ledger

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture(params=["postgres", "pgbouncer"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class LedgerTable:
    """A table of the application's, in the test's schema (dropped with it)."""

    name: str
    conn: asyncpg.Connection

    async def rows(self) -> list[tuple[str, int]]:
        found = await self.conn.fetch(f"SELECT job_id, pid FROM {self.name} ORDER BY job_id")
        return [(row["job_id"], row["pid"]) for row in found]


@pytest.fixture
async def ledger(location: str) -> AsyncIterator[LedgerTable]:
    schema = dict(parse_qsl(location.partition("?")[2]))["schema"]
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"CREATE TABLE {schema}.ledger (job_id text NOT NULL, pid int)")
        yield LedgerTable(f"{schema}.ledger", conn)
    finally:
        await conn.close()


async def reported_written(stream: EventStream, job_id: str) -> None:
    """Until the handler reports that it wrote (callers bound the wait)."""
    async for event in stream:
        if event.job_id == job_id and event.progress.message == "written":
            return
    raise AssertionError("event stream ended")


async def insert(table: str, value: int) -> None:
    async with transaction() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", current_job().id, value)


async def test_the_handlers_write_commits_with_its_completion(
    location: str, ledger: LedgerTable
) -> None:
    async with Runtime(location, queues=[Ledger()]) as rt:
        async with rt.events() as stream:
            job = await rt.enqueue("ledger", {"table": ledger.name})
            with anyio.fail_after(10):  # published like any completion
                await next_event(stream, job_id=job.id, status=JobStatus.COMPLETED)
        stored = await rt.job(job.id)
        assert stored.status is JobStatus.COMPLETED
        assert await ledger.rows() == [(job.id, stored.result["pid"])]
        assert [h.status for h in await rt.history(job.id)] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]


class WriteThenFail(Queue):
    """Writes, then fails its first attempt: only the second attempt's row is kept."""

    name = "write_then_fail"
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 0.0)

    async def handle_item(self, item: dict[str, Any]) -> str:
        await insert(item["table"], current_job().attempts)
        if current_job().attempts == 1:
            raise ValueError("the handler failed after writing")
        return "ok"


async def test_a_failed_attempt_keeps_none_of_its_writes(
    location: str, ledger: LedgerTable
) -> None:
    async with Runtime(location, queues=[WriteThenFail()]) as rt:
        job = await rt.enqueue("write_then_fail", {"table": ledger.name})
        with anyio.fail_after(10):
            done = await rt.wait(job.id)
        assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 2, "ok")
        assert await ledger.rows() == [(job.id, 2)]


class Blocks(Queue):
    """Writes in its transaction, then leaves a second block by an exception (rolling
    back both), writes again, and waits for a cancellation."""

    name = "blocks"

    async def handle_item(self, item: dict[str, Any]) -> str:
        await insert(item["table"], 1)
        with contextlib.suppress(LookupError):
            async with transaction() as conn:
                await conn.execute(f"INSERT INTO {item['table']} VALUES ('x', 2)")
                raise LookupError("leaves the block")
        await insert(item["table"], 3)
        if item.get("wait"):
            report_progress(1, 1, "written")
            await anyio.sleep_forever()
        return "ok"


async def test_blocks_share_one_transaction_and_an_exception_rolls_it_back(
    location: str, ledger: LedgerTable
) -> None:
    async with Runtime(location, queues=[Blocks()]) as rt:
        job = await rt.enqueue("blocks", {"table": ledger.name})
        with anyio.fail_after(10):
            assert (await rt.wait(job.id)).status is JobStatus.COMPLETED
        assert await ledger.rows() == [(job.id, 3)]  # rows 1 and 2 went with the exception


async def test_a_cancelled_handler_keeps_none_of_its_writes(
    location: str, ledger: LedgerTable
) -> None:
    async with Runtime(location, queues=[Blocks()]) as rt:
        async with rt.events() as stream:
            job = await rt.enqueue("blocks", {"table": ledger.name, "wait": True})
            with anyio.fail_after(10):
                await reported_written(stream, job.id)
                await rt.cancel(job.id)
                assert (await rt.wait(job.id)).status is JobStatus.CANCELLED
        assert await ledger.rows() == []


class Stumbles(Queue):
    """Catches its own failed statement: the transaction is aborted, so the commit with
    the completion is refused and the attempt fails with the server's error."""

    name = "stumbles"

    async def handle_item(self, item: dict[str, Any]) -> str:
        await insert(item["table"], 1)
        async with transaction() as conn:
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SELECT 1 / 0")
        return "ok"


async def test_a_commit_the_server_refuses_fails_the_attempt(
    location: str, ledger: LedgerTable
) -> None:
    async with Runtime(location, queues=[Stumbles()]) as rt:
        job = await rt.enqueue("stumbles", {"table": ledger.name})
        with anyio.fail_after(10):
            done = await rt.wait(job.id)
        assert done.status is JobStatus.FAILED
        assert "transaction is aborted" in (done.error or "")
        assert await ledger.rows() == []


class WaitsForRescue(Queue):
    name = "waits"
    released = anyio.Event()

    async def handle_item(self, item: dict[str, Any]) -> str:
        await insert(item["table"], 1)
        report_progress(1, 1, "written")
        await WaitsForRescue.released.wait()
        return "ok"


async def test_a_run_that_lost_its_lease_keeps_none_of_its_writes(
    location: str, ledger: LedgerTable, caplog: pytest.LogCaptureFixture
) -> None:
    WaitsForRescue.released = anyio.Event()
    schema = dict(parse_qsl(location.partition("?")[2]))["schema"]
    async with Runtime(location, queues=[WaitsForRescue()]) as rt:
        async with rt.events() as stream:
            job = await rt.enqueue("waits", {"table": ledger.name})
            with anyio.fail_after(10):
                await reported_written(stream, job.id)
            # A fake of another worker's rescue, which a test cannot time otherwise: the
            # lease passes to a token this run does not hold.
            await ledger.conn.execute(
                f"UPDATE {schema}.jobs SET lease_token = 'rescuer' WHERE id = $1", job.id
            )
            WaitsForRescue.released.set()

            with anyio.fail_after(10):  # the run ends: its commit is fenced out
                await wait_until(lambda: "the rescued run decides it" in caplog.text)
        assert await ledger.rows() == []
        assert JobStatus.COMPLETED not in [h.status for h in await rt.history(job.id)]
        assert (await rt.job(job.id)).status is JobStatus.RUNNING  # the rescuer's now


async def test_outside_a_handler_there_is_no_transaction() -> None:
    with pytest.raises(NotInJob):
        async with transaction():
            pass


class OnSQLite(Queue):
    name = "on_sqlite"

    async def handle_item(self, item: Any) -> None:
        async with transaction():
            pass


async def test_sqlite_refuses_a_handler_transaction(tmp_path: Path) -> None:
    async with Runtime(tmp_path / "jobs.db", queues=[OnSQLite()]) as rt:
        job = await rt.enqueue("on_sqlite", None)
        with anyio.fail_after(10):
            done = await rt.wait(job.id)
        assert done.status is JobStatus.FAILED
        assert "PostgreSQL" in (done.error or "")


async def test_exactly_once_effects_across_sigkills(
    location: str, ledger: LedgerTable, spawn: type[Worker]
) -> None:
    """Worker processes killed with SIGKILL at random moments, while runs sit between
    their write and their return: every job ends completed with exactly one row, written
    by the process that completed it."""
    count = 200
    rng = random.Random()
    schema = dict(parse_qsl(location.partition("?")[2]))["schema"]

    async def completed() -> int:
        query = f"SELECT count(*) FROM {schema}.jobs WHERE status = 'completed'"
        return int(await ledger.conn.fetchval(query))

    async with Runtime(location, queues=[Ledger()], workers=False) as client:
        jobs = await client.enqueue_many("ledger", [{"table": ledger.name, "after": 0.02}] * count)
        for _ in range(3):
            victim = spawn()
            goal = await completed() + rng.randint(10, 40)

            async def reached(goal: int = goal) -> bool:
                return await completed() >= goal

            with anyio.fail_after(30):
                await wait_until(reached, 0.005)
            victim.signal(signal.SIGKILL)
            with anyio.fail_after(10):
                assert await victim.exited() == -signal.SIGKILL

    async with Runtime(location, queues=[Ledger()]) as rt:  # rescues the dead owners' jobs
        with anyio.fail_after(60):
            done = [await rt.wait(job.id) for job in jobs]
    assert {d.status for d in done} == {JobStatus.COMPLETED}
    rows = await ledger.rows()
    assert sorted(job_id for job_id, _ in rows) == sorted(job.id for job in jobs)
    by_job = dict(rows)
    assert all(by_job[d.id] == d.result["pid"] for d in done)
