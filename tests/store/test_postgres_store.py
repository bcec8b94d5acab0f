"""The PostgreSQL store with real worker processes sharing one real database: each job
runs once, events stay in seq order whichever process wrote them, other processes hear
new jobs and cancellations through LISTEN/NOTIFY (the polls here are 30 s apart, so
nothing else could deliver them in time), a SIGKILLed worker's job is taken over, and
locks and outages give typed errors. The store's own semantics, shared with SQLite, are
in test_store_contract.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from urllib.parse import quote

import anyio
import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import Job, JobStatus, Runtime, StoreBusy, StoreUnavailable, ValidationError
from conveyor._limits import MAX_DELAY
from conveyor.store import PostgresStore
from conveyor.store.postgres import split_schema

from ..conftest import (
    POSTGRES_URL,
    Worker,
    next_event,
    pgbouncer_url,
    schema_exists,
    through_pooler,
    wait_until,
)
from ..worker_app import Work

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
NO_POLL = 30.0  # seconds: longer than any deadline here, so only notifications wake
NO_POLL_ARGS = ("--poll-interval", str(NO_POLL))


@pytest.fixture
def store_kind() -> str:
    """Only PostgreSQL here: ``location`` is a schema of its own, ``spawn`` starts
    worker processes on it."""
    return "postgres"


async def ready(worker: Worker) -> None:
    assert worker.proc.stdout is not None
    line = await anyio.to_thread.run_sync(worker.proc.stdout.readline, abandon_on_cancel=True)
    assert line.strip() == b"ready", line + worker.output().encode()


# Directly, and through a transaction pooler (PgBouncer) with the listener around it.
BOTH_WAYS = pytest.mark.parametrize("store_kind", ["postgres", "pgbouncer"])


@BOTH_WAYS
async def test_two_worker_processes_share_a_queue_and_run_each_job_once(
    location: str, spawn: type[Worker]
) -> None:
    workers = [spawn(*NO_POLL_ARGS), spawn(*NO_POLL_ARGS)]
    with anyio.fail_after(30):
        for w in workers:
            await ready(w)
    async with Runtime(location, queues=[Work()], workers=False, poll_interval=NO_POLL) as rt:
        async with rt.events(
            statuses=[JobStatus.COMPLETED, JobStatus.QUEUED, JobStatus.RUNNING]
        ) as events:
            jobs = await rt.enqueue_many("work", [{"sleep": 0.01}] * 200)
            seqs: list[int] = []
            completed: set[str] = set()
            with anyio.fail_after(30):
                async for event in events:
                    seqs.append(event.seq)
                    if event.status is JobStatus.COMPLETED:
                        completed.add(event.job_id)
                        if len(completed) == len(jobs):
                            break
        # One ordered stream, whichever process committed: every history row once, in
        # seq order, none skipped or repeated.
        assert seqs == sorted(set(seqs))
        assert completed == {j.id for j in jobs}
        pids = set()
        stored: list[int] = []
        for job in jobs:
            entries = await rt.history(job.id)
            stored += [h.seq for h in entries]
            history = [h.status for h in entries]
            assert history == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
            done = await rt.job(job.id)
            pids.add(done.result["pid"])
        assert pids == {w.pid for w in workers}  # both took their share
        assert sorted(stored) == seqs


@BOTH_WAYS
async def test_a_killed_workers_job_moves_on_and_a_cancel_from_elsewhere_reaches_it(
    location: str, spawn: type[Worker]
) -> None:
    first = spawn("--lease-ttl", "1", *NO_POLL_ARGS)
    with anyio.fail_after(30):
        await ready(first)
    async with Runtime(location, queues=[Work()], workers=False, poll_interval=NO_POLL) as rt:
        job = await rt.enqueue("work", {"block": True})
        with anyio.fail_after(15):
            await wait_until(lambda: _status(rt, job.id, JobStatus.RUNNING))
        first.signal(signal.SIGKILL)
        second = spawn("--lease-ttl", "1", *NO_POLL_ARGS)
        async with rt.events(job_id=job.id) as events:
            with anyio.fail_after(30):
                await next_event(events, status=JobStatus.QUEUED)  # rescued
                await next_event(events, status=JobStatus.RUNNING)  # by the second worker
            await rt.request_job_cancel("work", job.id)
            with anyio.fail_after(10):
                await next_event(events, status=JobStatus.CANCELLED)
        history = await rt.history(job.id)
        assert [h.status for h in history] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
        ]
        assert history[2].message is not None
        assert "worker lost" in history[2].message
        second.signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await second.exited() == 0


async def all_complete(rt: Runtime, *jobs: Job) -> None:
    with anyio.fail_after(10):
        for job in jobs:
            assert (await rt.wait(job.id)).status is JobStatus.COMPLETED


async def _status(rt: Runtime, job_id: str, status: JobStatus) -> bool:
    return (await rt.job(job_id)).status is status


async def test_a_held_lock_gives_store_busy_for_its_job_only(location: str) -> None:
    dsn, schema = split_schema(location)
    store = PostgresStore(location, lock_timeout=0.2)
    async with Runtime(store, queues=[Work()], workers=False) as rt:
        held = await rt.enqueue("work", {})
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"SELECT 1 FROM {schema}.jobs WHERE id = $1 FOR UPDATE", held.id)
                with pytest.raises(StoreBusy, match="lock timeout") as raised:
                    await rt.request_job_cancel("work", held.id)
                assert "nothing was changed" in str(raised.value)
                # No lock is shared by every write: the rest of the queue goes on, even
                # while a transaction is held open on the server.
                others = await rt.enqueue_many("work", [{}, {}])
                assert (await rt.request_job_cancel("work", others[0].id)).status is (
                    JobStatus.CANCELLED
                )
        finally:
            await conn.close()
        assert (await rt.job(held.id)).status is JobStatus.QUEUED  # the refusal changed nothing
        assert (await rt.request_job_cancel("work", held.id)).status is JobStatus.CANCELLED


async def test_an_unreachable_server_is_store_unavailable_naming_it() -> None:
    url = "postgresql://postgres:secret@127.0.0.1:1/test"
    with pytest.raises(
        StoreUnavailable, match=re.escape("postgresql://postgres@127.0.0.1:1/test")
    ) as raised:
        async with Runtime(url, queues=[Work()]):
            pass
    assert "secret" not in str(raised.value)


async def test_a_lost_listener_reconnects_and_misses_nothing(
    location: str, spawn: type[Worker]
) -> None:
    worker = spawn(*NO_POLL_ARGS)
    with anyio.fail_after(30):
        await ready(worker)
    dsn, schema = split_schema(location)
    conn = await asyncpg.connect(dsn)
    try:
        ended = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'conveyor-listen' AND query LIKE $1",
            f"%conveyor_{schema}%",
        )
        assert [row[0] for row in ended] == [True]  # the worker's one listener
    finally:
        await conn.close()
    async with Runtime(location, queues=[Work()], workers=False, poll_interval=NO_POLL) as rt:
        job = await rt.enqueue("work", {})
        # Well before the worker's rescue loop (every 5 s) would read the history anyway.
        with anyio.fail_after(3):
            assert (await rt.wait(job.id)).status is JobStatus.COMPLETED


async def test_a_transaction_pooler_without_listen_url_is_refused_saying_what_to_do(
    location: str,
) -> None:
    pooled = through_pooler(location, pgbouncer_url()).partition("&listen_url=")[0]
    with pytest.raises(StoreUnavailable, match="give listen_url= a direct connection") as raised:
        async with Runtime(pooled, queues=[Work()]):
            pass
    assert "PgBouncer" in str(raised.value)
    # A listen_url that is not the same database: the check at open catches it too.
    elsewhere = f"{pooled}&listen_url=" + quote("postgresql://postgres@127.0.0.1:5432/postgres")
    with pytest.raises(StoreUnavailable, match="Does listen_url name the same database"):
        async with Runtime(elsewhere, queues=[Work()]):
            pass
    # Refused before anything was made: "nothing was changed" holds.
    assert not await schema_exists(location)
    with pytest.raises(ValueError, match="listen_url must be a postgresql:// URL"):
        PostgresStore(f"{pooled}&listen_url=")


async def test_a_transaction_its_client_abandoned_holds_events_back_only_briefly(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Readers of the history wait for every older transaction (see the schema): one that
    # a vanished client left open in the middle of a write would stall every runtime's
    # events for as long as the server keeps it. The server ends it after
    # IDLE_IN_TRANSACTION (10 s; 1 s here, so the test is short).
    from conveyor.store.postgres import _db

    monkeypatch.setattr(_db, "IDLE_IN_TRANSACTION", 1)
    store = PostgresStore(location)
    async with Runtime(store, queues=[Work()], shutdown_grace=0) as rt:
        pool = store.db._pool
        assert pool is not None
        async with pool.acquire() as conn:
            stuck = conn.transaction()
            await stuck.start()
            await conn.execute("SELECT pg_current_xact_id()")  # it holds a transaction id
            started = anyio.current_time()
            job = await rt.enqueue("work", {})
            with anyio.fail_after(10):
                assert (await rt.wait(job.id)).status is JobStatus.COMPLETED
            assert anyio.current_time() - started < 5
            # The server ended it: asyncpg says so as the server's error, as a closed
            # connection, or (when the server's farewell arrives mid-call) as a client
            # state error.
            ended = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
            with pytest.raises(ended):
                await conn.execute("SELECT 1")


async def test_a_commit_holds_at_most_the_rows_a_seq_can_number(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real bound is 2**20 - 1 history rows per transaction (the seq's ordinal bits);
    # lowered here, as building a million jobs would only make the test slow.
    from conveyor.store.postgres import _writes

    monkeypatch.setattr(_writes, "MAX_ROWS", 3)
    async with Runtime(location, queues=[Work()], workers=False) as rt:
        with pytest.raises(ValidationError, match="at most 3 jobs go in one commit"):
            await rt.enqueue_many("work", [{}] * 4)
        assert await rt.list_jobs() == []
        assert len(await rt.enqueue_many("work", [{}] * 3)) == 3


def test_a_schema_name_must_be_a_plain_sql_name() -> None:
    with pytest.raises(ValueError, match="schema must be"):
        PostgresStore("postgresql://localhost/test?schema=x;drop table jobs")


def test_split_schema_keeps_other_parameters() -> None:
    assert split_schema("postgresql://h/db?sslmode=disable&schema=s1") == (
        "postgresql://h/db?sslmode=disable",
        "s1",
    )
    assert split_schema("postgresql://h/db") == ("postgresql://h/db", None)


async def test_connections_cut_by_the_server_are_replaced(location: str) -> None:
    """pg_terminate_backend on every connection of the runtime, as a server restart
    would: the next calls open new ones, and nothing is lost."""
    dsn, _ = split_schema(location)
    async with Runtime(location, queues=[Work()], shutdown_grace=0, poll_interval=NO_POLL) as rt:
        before = await rt.enqueue("work", {})
        conn = await asyncpg.connect(dsn)
        try:
            cut = await conn.fetch(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'conveyor%' AND pid <> pg_backend_pid()"
            )
            assert len(cut) >= 3  # both pools and the listener
            pids = [row[0] for row in cut]
            with anyio.fail_after(10):
                await wait_until(lambda: _all_gone(conn, pids))
        finally:
            await conn.close()
        await all_complete(rt, before, await rt.enqueue("work", {}))


async def _all_gone(conn: asyncpg.Connection, pids: list[int]) -> bool:
    rows = await conn.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)", pids)
    return not rows


def _local_cluster() -> list[str]:
    """The command that restarts the test server, when this test may: it is Debian's
    cluster on this machine and we are root. Otherwise the test skips."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or len(versions) != 1:
        pytest.skip("restarting PostgreSQL needs root and one local Debian cluster")
    if "@127.0.0.1:" not in POSTGRES_URL and "@localhost:" not in POSTGRES_URL:
        pytest.skip("the test server is not on this machine")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main"]


async def said(worker: Worker, words: str) -> None:
    """Read the worker's output up to a line with ``words`` (callers bound the wait)."""
    assert worker.proc.stdout is not None
    while True:
        line = await anyio.to_thread.run_sync(worker.proc.stdout.readline, abandon_on_cancel=True)
        if not line:
            raise AssertionError(f"the worker ended without saying {words!r}")
        if words.encode() in line:
            return


async def test_a_server_outage_loses_no_job(location: str, spawn: type[Worker]) -> None:
    """The real server stopped while a worker process runs jobs, and started again once
    the worker failed to write an outcome: those writes and the claims are retried, the
    listener comes back, and every job enqueued before and after completes once."""
    cluster = _local_cluster()
    worker = spawn()
    with anyio.fail_after(30):
        await ready(worker)
    async with Runtime(location, queues=[Work()], workers=False) as rt:
        before = await rt.enqueue_many("work", [{"sleep": 0.5}] * 40)  # 5 s for 4 workers
        with anyio.fail_after(15):
            await wait_until(lambda: _status(rt, before[0].id, JobStatus.RUNNING))
        try:
            stopped = await anyio.to_thread.run_sync(
                lambda: subprocess.run([*cluster, "stop"], capture_output=True, timeout=60)
            )
            assert stopped.returncode == 0, stopped.stderr
            with anyio.fail_after(30):
                await said(worker, "finish write failed, retrying")
        finally:  # whatever happened, leave the server running for the other tests
            started = await anyio.to_thread.run_sync(
                lambda: subprocess.run([*cluster, "start"], capture_output=True, timeout=60)
            )
        assert started.returncode == 0, started.stderr
        with anyio.fail_after(60):
            while True:
                try:
                    after = await rt.enqueue_many("work", [{"sleep": 0.01}] * 12)
                    break
                except StoreUnavailable:  # this runtime's pool meets the outage too
                    await anyio.sleep(0.2)
            for job in [*before, *after]:
                done = await rt.wait(job.id)
                assert done.status is JobStatus.COMPLETED, done
        for job in [*before, *after]:
            statuses = [h.status for h in await rt.history(job.id)]
            assert statuses.count(JobStatus.COMPLETED) == 1
    worker.signal(signal.SIGTERM)
    with anyio.fail_after(15):
        assert await worker.exited() == 0


OPTION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(
    option=st.sampled_from(["lock_timeout", "command_timeout", "pool_size", "handler_pool_size"]),
    value=OPTION_VALUES,
)
def test_store_options_are_checked_and_named(option: str, value: object) -> None:
    """Whatever a store option is given, the store takes it or refuses it with a
    ValidationError naming it (no server needed: nothing is opened)."""
    pool = option.endswith("pool_size")
    fits = (
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000
        if pool
        else isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 < value <= MAX_DELAY
    )
    if not fits:
        with pytest.raises(ValidationError, match=option):
            PostgresStore("postgresql://127.0.0.1/none", **{option: value})  # type: ignore[arg-type]
        return
    store = PostgresStore("postgresql://127.0.0.1/none", **{option: value})  # type: ignore[arg-type]
    assert getattr(store.db, option) == (value if pool else float(value))  # type: ignore[arg-type]
