"""PostgreSQL history without a global lock: several writer processes commit history rows
in transactions that start, write and commit in interleaved orders (hypothesis chooses
the waits), while a tail reads pages of every size: it sees every row exactly once, in
seq order, and each job's rows in the order they were written. See the schema's docstring
(store/postgres/_schema.py, migration 3) for why reading below the horizon makes it so."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import JobStatus
from conveyor.store import NewJob, PostgresStore, Store, Transition
from conveyor.store.postgres import split_schema
from conveyor.store.postgres._schema import MIGRATIONS

from ..conftest import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]
WRITER = Path(__file__).with_name("history_writer.py")
WRITERS = 3
JOBS_PER_WRITER = 4


@pytest.fixture
def store_kind() -> str:
    return "postgres"


@pytest.fixture
async def store(location: str) -> AsyncIterator[Store]:
    store = PostgresStore(location)
    await store.open("tail")
    ids = [f"w{w}j{j}" for w in range(WRITERS) for j in range(JOBS_PER_WRITER)]
    await store.writes.jobs_insert(
        [
            NewJob(id=i, queue="q", status=JobStatus.QUEUED, payload=b"{}", created_at=1.0)
            for i in ids
        ]
    )
    try:
        yield store
    finally:
        await store.close()


async def test_a_schema_from_before_keeps_its_history_first_in_the_stream(
    location: str,
) -> None:
    # A database written by the counter-row scheme (migrations 1 and 2, seqs 1, 2, 3...)
    # upgraded in place: its rows stay, and every row written after them comes after them.
    dsn, schema = split_schema(location)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE {schema}.version (number integer)")
        for number, script in enumerate(MIGRATIONS[:2], start=1):
            await conn.execute(script.format(schema=schema))
            await conn.execute(f"INSERT INTO {schema}.version VALUES ($1)", number)
        await conn.execute(
            f"INSERT INTO {schema}.jobs (id, queue, status, payload, created_at, updated_at)"
            " VALUES ('old', 'q', 'queued', '{}', 1, 1)"
        )
        await conn.execute(
            f"INSERT INTO {schema}.job_history (seq, job_id, queue, status, at, origin)"
            " VALUES (1, 'old', 'q', 'queued', 1, 'before')"
        )
        await conn.execute(f"UPDATE {schema}.history_seq SET last = 1")
    finally:
        await conn.close()
    store = PostgresStore(location)
    await store.open("after")
    try:
        await store.writes.jobs_insert(
            [NewJob(id="new", queue="q", status=JobStatus.QUEUED, payload=b"{}", created_at=2.0)]
        )
        # A transaction open elsewhere on the server holds the new row above the horizon
        # until it ends, and nothing announces that: look again.
        page: list[Transition] = []

        async def both() -> bool:
            nonlocal page
            page = (await store.reads.history_after(0, 10, everything=True))[0]
            return len(page) >= 2

        with anyio.fail_after(30):
            await wait_until(both)
        assert (page[0].seq, page[0].job_id) == (1, "old")
        assert [t.job_id for t in page] == ["old", "new"]
        assert page[1].seq > 1
    finally:
        await store.close()


# Per writer, its transactions: ms between taking its id and writing, rows, ms between
# writing and committing. Long holds on one writer and short ones on another are what
# make a younger transaction commit before an older one.
schedules = st.lists(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, JOBS_PER_WRITER), st.integers(0, 40)),
        min_size=1,
        max_size=5,
    ),
    min_size=WRITERS,
    max_size=WRITERS,
)


async def run_writers(location: str, plan: list[list[tuple[int, int, int]]]) -> None:
    procs: list[anyio.abc.Process] = []
    try:
        for w, schedule in enumerate(plan):
            ids = [f"w{w}j{j}" for j in range(JOBS_PER_WRITER)]
            procs.append(
                await anyio.open_process(
                    [sys.executable, str(WRITER), location, json.dumps(ids), json.dumps(schedule)]
                )
            )
        for proc in procs:  # each has opened its store
            assert proc.stdout is not None
            assert (await proc.stdout.receive()).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            await proc.stdin.send(b"go\n")
        for proc in procs:
            assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()


async def tail(
    store: Store, start: int, limit: int, writing: anyio.Event, count: Callable[[], Awaitable[int]]
) -> list[int]:
    """Read pages of ``limit`` rows from ``start`` until the writers are done and the
    tail has all they wrote (``count``: the rows committed after ``start``). Only then:
    any transaction still open on the server, this test's or another's, holds rows
    above the horizon for as long as it lasts."""
    seen: list[int] = []
    position = start
    while True:
        done = writing.is_set()
        page, position = await store.reads.history_after(position, limit, everything=True)
        seen += [t.seq for t in page]
        if done and not page and len(seen) >= await count():
            return seen
        if not page:
            await anyio.sleep(0.001)


async def max_seq(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT coalesce(max(seq), 0) FROM {schema}.job_history"))
    finally:
        await conn.close()


async def count_after(dsn: str, schema: str, start: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM {schema}.job_history WHERE seq > $1", start)
        )
    finally:
        await conn.close()


async def test_a_tail_never_skips_or_repeats_a_row_whatever_the_interleaving(
    store: Store, location: str
) -> None:
    dsn, schema = split_schema(location)
    rounds = 0

    async def one(plan: list[list[tuple[int, int, int]]], limit: int) -> None:
        nonlocal rounds
        # Past every row there is: a transaction held open elsewhere on the server keeps
        # the horizon (and so last_seq) below the last example's rows.
        start = max(await store.reads.last_seq(), await max_seq(dsn, schema))
        written = anyio.Event()
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:

                async def write() -> None:
                    await run_writers(location, plan)
                    written.set()

                tg.start_soon(write)
                seen = await tail(
                    store, start, limit, written, partial(count_after, dsn, schema, start)
                )
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                f"SELECT seq, job_id, at FROM {schema}.job_history WHERE seq > $1 ORDER BY seq",
                start,
            )
        finally:
            await conn.close()
        stored = [row["seq"] for row in rows]
        assert len(stored) == sum(n + max(1, n // 2) for schedule in plan for _, n, _ in schedule)
        assert seen == stored  # every row once, in seq order
        # Each job's rows were written one write after another: seq order is the order
        # they were written in (``at``, the writer's clock when it wrote).
        by_job: dict[str, list[float]] = {}
        for row in rows:
            by_job.setdefault(row["job_id"], []).append(row["at"])
        assert all(times == sorted(times) for times in by_job.values())
        rounds += 1

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(schedules, st.integers(1, 6))
    def check(plan: list[list[tuple[int, int, int]]], limit: int) -> None:
        anyio.from_thread.run(one, plan, limit)

    await anyio.to_thread.run_sync(check)
    assert rounds >= 8


async def test_a_tail_read_costs_the_same_however_long_the_history(
    store: Store, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Work counted as the pages the tail's statement touches (EXPLAIN ANALYZE's buffers),
    # deterministic where timings are not: read up to date, with 100 history rows and with
    # 20,000 (not yet analyzed, as rows just written are), it touches the same few pages.
    # (Its check for rows held above the horizon had been planned as a scan of the whole
    # table, on every read: 190 pages.)
    assert isinstance(store, PostgresStore)
    dsn, schema = split_schema(location)
    statements: list[tuple[str, tuple[object, ...]]] = []
    fetch = store.reads.db.fetch

    async def recording(sql: str, *args: object) -> object:
        statements.append((sql, args))
        return await fetch(sql, *args)

    monkeypatch.setattr(store.reads.db, "fetch", recording)
    conn = await asyncpg.connect(dsn)

    async def pages_touched(rows: int, everything: bool) -> int:
        # Rows from before every transaction now running: seqs 1..rows, all below the horizon.
        await conn.execute(f"DELETE FROM {schema}.job_history WHERE seq <= 20000")
        await conn.execute(
            f"INSERT INTO {schema}.job_history (seq, job_id, queue, status, at, origin)"
            " SELECT n, 'w0j0', 'q', 'completed', 1, 'before' FROM generate_series(1, $1) n",
            rows,
        )
        start = await store.reads.last_seq()
        statements.clear()
        await store.reads.history_after(start, 500, everything=everything)
        ((sql, args),) = statements
        plan = json.loads(
            await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        )[0]["Plan"]
        return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])

    try:
        for everything in (False, True):
            small = await pages_touched(100, everything)
            large = await pages_touched(20_000, everything)
            assert large <= small + 2, (everything, small, large)
    finally:
        await conn.close()
