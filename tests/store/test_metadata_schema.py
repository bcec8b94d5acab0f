"""Migration 7 (job meta and tags) on a database written before it, on both stores: the
old jobs read back with none, keep running, and new jobs carry theirs, filterable."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import pytest

from conveyor import JobStatus, Queue, Runtime
from conveyor.store.postgres import split_schema
from conveyor.store.postgres._schema import MIGRATIONS as POSTGRES_MIGRATIONS
from conveyor.store.sqlite._schema import MIGRATIONS as SQLITE_MIGRATIONS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Imports(Queue):
    name = "imports"

    async def handle_item(self, item: Any) -> Any:
        return item


def _sqlite_before_7(path: str) -> None:
    with sqlite3.connect(path) as conn:
        for script in SQLITE_MIGRATIONS[:6]:
            conn.executescript(script)
        conn.execute(
            "INSERT INTO jobs (id, queue, status, payload, created_at, updated_at)"
            " VALUES ('00old', 'imports', 'queued', '{\"n\":1}', 1, 1)"
        )
        conn.execute(
            "INSERT INTO job_history (job_id, queue, status, at, origin)"
            " VALUES ('00old', 'imports', 'queued', 1, 'before')"
        )
        conn.execute("PRAGMA user_version = 6")


async def _postgres_before_7(location: str) -> None:
    dsn, schema = split_schema(location)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE {schema}.version (number integer)")
        for number, script in enumerate(POSTGRES_MIGRATIONS[:6], start=1):
            await conn.execute(script.format(schema=schema))
            await conn.execute(f"INSERT INTO {schema}.version VALUES ($1)", number)
        await conn.execute(
            f"INSERT INTO {schema}.jobs (id, queue, status, payload, created_at, updated_at)"
            " VALUES ('00old', 'imports', 'queued', '{\"n\":1}', 1, 1)"
        )
        await conn.execute(
            f"INSERT INTO {schema}.job_history (seq, job_id, queue, status, at, origin)"
            " VALUES (1, '00old', 'imports', 'queued', 1, 'before')"
        )
    finally:
        await conn.close()


async def test_a_database_from_before_migration_7_upgrades_in_place(
    location: str, store_kind: str
) -> None:
    assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS) >= 7  # this test's premise
    if store_kind == "sqlite":
        _sqlite_before_7(location)
    else:
        await _postgres_before_7(location)
    async with Runtime(location, queues=[Imports()]) as rt:
        old = await rt.job("00old")
        assert (old.meta, old.tags) == ({}, [])
        new = await rt.enqueue("imports", {"n": 2}, meta={"tenant": "acme"}, tags=["import"])
        done = await rt.wait(old.id, timeout=10)
        assert (done.status, done.result) == (JobStatus.COMPLETED, {"n": 1})
        assert [j.id for j in await rt.list_jobs(tags=["import"])] == [new.id]
        assert [j.id for j in await rt.list_jobs(meta={"tenant": "acme"})] == [new.id]
        assert {j.id for j in await rt.list_jobs()} == {old.id, new.id}
