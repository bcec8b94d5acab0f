"""The PostgreSQL store's operator reads cost the same as finished jobs pile up: listing
and counting running, failed or queued jobs touches the same few pages with 100 completed
jobs retained and with 20,000. Running jobs are in no status index (migration 9): their
leases find them. Work is counted as in test_postgres_history's tail test: the pages a
statement touches (EXPLAIN ANALYZE's buffers), deterministic where timings are not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from conveyor import JobStatus
from conveyor.store import JobMatch, ListParams, PostgresStore
from conveyor.store.postgres import split_schema

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SMALL, LARGE = 100, 20_000  # completed jobs retained
AROUND = 5  # failed, running and queued jobs beside them, in either
RUNNING = JobStatus.RUNNING
UNFINISHED = frozenset([JobStatus.QUEUED, RUNNING, JobStatus.SCHEDULED])


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url)
    await store.open("me")
    try:
        yield store
    finally:
        await store.close()


async def add(conn: asyncpg.Connection, schema: str, status: str, n: int, start: int) -> None:
    """``n`` jobs of queue q in ``status``, ids from ``start``; running ones leased."""
    leased = "'o', 't', 2e9" if status == "running" else "NULL, NULL, NULL"
    finished = "1.0" if status in ("completed", "failed") else "NULL"
    await conn.execute(
        f"INSERT INTO {schema}.jobs (id, queue, status, payload, created_at, updated_at,"
        " finished_at, lease_owner, lease_token, lease_expires_at)"
        f" SELECT lpad(i::text, 12, '0'), 'q', $1, '{{}}', 1.0, 1.0, {finished}, {leased}"
        " FROM generate_series($2::int, $3::int) AS i",
        status,
        start,
        start + n - 1,
    )


async def test_the_operators_reads_cost_the_same_on_a_larger_store(
    store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, schema = split_schema(pg_url)
    reads = store.reads
    statements: list[tuple[str, tuple[object, ...]]] = []
    fetch = reads.db.fetch

    async def recording(sql: str, *args: object) -> object:
        statements.append((sql, args))
        return await fetch(sql, *args)

    monkeypatch.setattr(reads.db, "fetch", recording)
    measured: dict[str, Callable[[], Awaitable[object]]] = {
        "list running": lambda: reads.jobs_list(ListParams(status=RUNNING)),
        "list a queue's running": lambda: reads.jobs_list(ListParams(queue="q", status=RUNNING)),
        "list failed": lambda: reads.jobs_list(ListParams(status=JobStatus.FAILED)),
        "list a queue's queued": lambda: reads.jobs_list(
            ListParams(queue="q", status=JobStatus.QUEUED)
        ),
        "list a queue": lambda: reads.jobs_list(ListParams(queue="q")),
        "count running": lambda: reads.jobs_count(JobMatch(statuses=frozenset([RUNNING]))),
        "count a queue's unfinished": lambda: reads.jobs_count(
            JobMatch(statuses=UNFINISHED, queue="q")
        ),
        "others' running progress": lambda: reads.jobs_running_progress("another runtime"),
    }
    conn = await asyncpg.connect(dsn)

    async def pages_touched() -> dict[str, int]:
        # Analyzed, as autovacuum keeps a table that grew: the plans are the planner's
        # choice with the statistics it has in steady use.
        await conn.execute(f"ANALYZE {schema}.jobs")
        pages = {}
        for name, read in measured.items():
            statements.clear()
            await read()
            ((sql, args),) = statements
            plan = json.loads(
                await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
            )[0]["Plan"]
            pages[name] = int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])
        return pages

    try:
        for n, status in enumerate(("failed", "running", "queued")):
            await add(conn, schema, status, AROUND, LARGE + 1 + n * AROUND)
        await add(conn, schema, "completed", SMALL, 1)
        small = await pages_touched()
        await add(conn, schema, "completed", LARGE - SMALL, SMALL + 1)
        large = await pages_touched()
    finally:
        await conn.close()
    # A larger index is a level deeper: a page more for each of its searches (listing a
    # queue searches one per status); a scan would touch some 300 more.
    grown = {name: large[name] - small[name] for name in small}
    assert all(extra <= 10 for extra in grown.values()), (grown, small, large)
