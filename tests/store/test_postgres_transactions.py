"""Enqueue inside the application's transaction (PostgreSQL): the job exists only if the
transaction commits, no worker sees it before, and an open transaction delays no other
writer. With real connections of the application's own, next to a runtime running
workers that hears of commits only by notification (its polls are 30 s apart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from conveyor import JobNotFound, JobStatus, Runtime, ValidationError
from conveyor.store.postgres import split_schema

from ..conftest import wait_until
from ..worker_app import Work

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
NO_POLL = 30.0


@pytest.fixture
def store_kind() -> str:
    return "postgres"


@pytest.fixture
async def app_conn(location: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the application's own, to the same database."""
    conn = await asyncpg.connect(split_schema(location)[0])
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_job_enqueued_in_a_transaction_exists_once_it_commits(
    location: str, app_conn: asyncpg.Connection
) -> None:
    async with Runtime(location, queues=[Work()], poll_interval=NO_POLL) as rt:
        async with app_conn.transaction():
            await app_conn.execute("SELECT 1")  # the application's own work
            job = await rt.enqueue("work", {}, connection=app_conn)
            many = await rt.enqueue_many("work", [{}, {}], connection=app_conn)
            assert job.status is JobStatus.QUEUED
            for unseen in (job, *many):  # outside the transaction, nobody sees them
                with pytest.raises(JobNotFound):
                    await rt.job(unseen.id)
        with anyio.fail_after(10):  # committed: the notification wakes the workers
            for done in (job, *many):
                assert (await rt.wait(done.id)).status is JobStatus.COMPLETED
        history = [h.status for h in await rt.history(job.id)]
        assert history == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]


async def test_a_rolled_back_transaction_leaves_no_job(
    location: str, app_conn: asyncpg.Connection
) -> None:
    async with Runtime(location, queues=[Work()], poll_interval=NO_POLL) as rt:
        tx = app_conn.transaction()
        await tx.start()
        job = await rt.enqueue("work", {}, connection=app_conn)
        await tx.rollback()
        with pytest.raises(JobNotFound):
            await rt.job(job.id)
        assert await rt.list_jobs() == []
        after = await rt.enqueue("work", {})  # and the runtime goes on
        with anyio.fail_after(10):
            assert (await rt.wait(after.id)).status is JobStatus.COMPLETED


async def test_a_transaction_held_open_five_seconds_delays_no_writer(
    location: str, app_conn: asyncpg.Connection
) -> None:
    async with Runtime(location, queues=[Work()], poll_interval=NO_POLL) as rt:
        async with app_conn.transaction():
            held = await rt.enqueue("work", {}, connection=app_conn)
            opened = anyio.current_time()
            # Meanwhile the queue goes on: enqueues, claims and completions commit at
            # once (their events wait for the open transaction, so look at the rows).
            jobs = await rt.enqueue_many("work", [{}] * 20)
            with anyio.fail_after(3):
                for job in jobs:
                    await wait_until(lambda j=job: _completed(rt, j.id))
            busy = anyio.current_time() - opened
            assert busy < 3
            await anyio.sleep(5 - busy)  # the transaction stays open its 5 seconds
        with anyio.fail_after(10):
            assert (await rt.wait(held.id)).status is JobStatus.COMPLETED


async def _completed(rt: Runtime, job_id: str) -> bool:
    return (await rt.job(job_id)).status is JobStatus.COMPLETED


async def test_connection_is_refused_where_it_cannot_join(
    location: str, app_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with Runtime(location, queues=[Work()], workers=False) as rt:
        with pytest.raises(ValidationError, match="not in a transaction"):
            await rt.enqueue("work", {}, connection=app_conn)
        with pytest.raises(ValidationError, match="must be an asyncpg connection"):
            await rt.enqueue("work", {}, connection=object())
        assert await rt.list_jobs() == []
    async with Runtime(tmp_path / "jobs.db", queues=[Work()], workers=False) as rt:
        async with app_conn.transaction():
            with pytest.raises(ValidationError, match="SQLite store commits its own"):
                await rt.enqueue("work", {}, connection=app_conn)
