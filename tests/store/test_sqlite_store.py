"""The SQLite store on real files: locks, read-only files, a full disk, schema versions,
indexes."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import (
    JobStatus,
    Queue,
    Runtime,
    SQLiteStore,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from conveyor.client import Client
from conveyor.store.sqlite._schema import MIGRATIONS

from ..conftest import wait_until

pytestmark = pytest.mark.anyio


class Plain(Queue):
    name = "plain"

    async def handle_item(self, item: Any) -> Any:
        return item


async def test_a_locked_database_gives_store_busy_and_loses_nothing(db_path: Path) -> None:
    store = SQLiteStore(db_path, busy_timeout=0.2)
    async with Runtime(store, queues=[Plain()], workers=False) as rt:
        kept = await rt.enqueue("plain", {"n": 1})
        blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        # Another process holding the write lock (in a thread: never block the loop).
        await anyio.to_thread.run_sync(blocker.execute, "BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusy, match="database is locked"):
                await rt.enqueue("plain", {"n": 2})
            with pytest.raises(StoreBusy):
                await rt.request_job_cancel("plain", kept.id)
        finally:
            await anyio.to_thread.run_sync(blocker.execute, "ROLLBACK")
            blocker.close()
        # The runtime keeps serving, and only what was acknowledged is there.
        again = await rt.enqueue("plain", {"n": 3})
        jobs = await rt.list_jobs()
        assert [j.id for j in jobs] == [again.id, kept.id]
        assert [j.payload for j in jobs] == [{"n": 3}, {"n": 1}]


async def test_workers_ride_out_a_locked_database(db_path: Path) -> None:
    store = SQLiteStore(db_path, busy_timeout=0.1)
    async with Runtime(store, queues=[Plain()]) as rt:
        # The blocker runs in a thread, as another process would, so that waiting for
        # the lock never blocks this event loop.
        blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        job = await rt.enqueue("plain", "first")
        await rt.wait(job.id, timeout=10)
        await anyio.to_thread.run_sync(blocker.execute, "BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy):
            await rt.enqueue("plain", "refused")
        await anyio.to_thread.run_sync(blocker.execute, "ROLLBACK")
        blocker.close()
        job = await rt.enqueue("plain", "second")
        assert (await rt.wait(job.id, timeout=10)).status is JobStatus.COMPLETED


@pytest.fixture
def immutable(db_path: Path) -> Iterator[Path]:
    """Makes the database file immutable (chattr +i): even root cannot write it."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    made: list[Path] = []

    def freeze() -> None:
        result = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"chattr +i not permitted here: {result.stderr.decode().strip()}")
        made.append(db_path)

    yield freeze  # type: ignore[misc]
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_a_read_only_database_gives_a_clear_error_and_keeps_its_jobs(
    db_path: Path, immutable: Any
) -> None:
    async with Runtime(db_path, queues=[Plain()], workers=False) as rt:
        job = await rt.enqueue("plain", {"keep": True})
    immutable()
    with pytest.raises(StoreUnavailable, match=str(db_path)):
        async with Runtime(db_path, queues=[Plain()]):
            pass
    await anyio.run_process(["chattr", "-i", str(db_path)])
    async with Runtime(db_path, queues=[Plain()]) as rt:
        assert (await rt.wait(job.id, timeout=10)).result == {"keep": True}


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreUnavailable, match="newer"):
        async with Runtime(db_path, queues=[Plain()]):
            pass


def _write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not sqlite" * 100)


async def test_not_a_database_is_a_store_error(db_path: Path) -> None:
    await anyio.to_thread.run_sync(_write_garbage, db_path)
    with pytest.raises(StoreError):
        async with Runtime(db_path, queues=[Plain()]):
            pass


async def test_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="unable to open"):
        async with Runtime(tmp_path / "missing" / "jobs.db", queues=[Plain()]):
            pass


async def test_reopening_keeps_jobs_and_schema(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Plain()], workers=False) as rt:
        job = await rt.enqueue("plain", 1)
    async with Runtime(db_path, queues=[Plain()], workers=False) as rt:
        assert (await rt.job_status("plain", job.id)).payload == 1
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claiming_reads_an_index_not_the_table(db_path: Path) -> None:
    """Claim cost stays O(log n) as the table grows: the plan must search jobs_ready."""
    with sqlite3.connect(db_path) as conn:
        for script in MIGRATIONS:
            conn.executescript(script)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE queue = ? AND status = 'queued'"
            " ORDER BY priority DESC, id LIMIT 10",
            ("q",),
        ).fetchall()
    details = " ".join(row[3] for row in plan)
    assert "USING INDEX jobs_ready" in details or "USING COVERING INDEX jobs_ready" in details
    assert "TEMP B-TREE" not in details  # no sort: rows come out of the index in order
    assert "SCAN jobs" not in details


async def test_synchronous_full_is_the_default(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    assert store.synchronous == "FULL"
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(db_path, synchronous="OFF")  # type: ignore[arg-type]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs) to fill up. Mounting needs root, which CI has."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount not permitted here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the filesystem says it is full."""
    ballast = disk / "ballast"
    block = b"\0" * 4096
    with ballast.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            for _ in range(100_000):  # bounded: 400 MB, far past the 4 MiB disk
                f.write(block)
    return ballast


class Gated(Queue):
    name = "gated"
    worker_count = 3

    def __init__(self, holding: int) -> None:
        self.holding = holding
        self.all_running = anyio.Event()
        self.gate = anyio.Event()

    async def handle_item(self, item: Any) -> Any:
        self.holding -= 1
        if self.holding == 0:
            self.all_running.set()
        await self.gate.wait()
        return item


async def test_a_full_disk_refuses_writes_with_a_clear_error_and_loses_nothing(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gated = Gated(holding=3)
    async with Runtime(
        small_disk / "jobs.db", queues=[gated], serve=("127.0.0.1", 0), shutdown_grace=0
    ) as rt:
        held = [await rt.enqueue("gated", {"n": n}) for n in range(3)]
        with anyio.fail_after(10):
            await gated.all_running.wait()
        ballast = await anyio.to_thread.run_sync(fill, small_disk)

        # Enqueue until a write needs room the file system no longer has (bounded: the
        # WAL has some room left from earlier writes).
        accepted: list[str] = []
        refused: StoreUnavailable | None = None
        for n in range(900):
            try:
                job = await rt.enqueue("gated", {"pad": "x" * 4_000, "n": n})
            except StoreUnavailable as exc:
                refused = exc
                break
            accepted.append(job.id)
        assert refused is not None, "900 jobs of 4 kB fitted on a full 4 MiB disk"
        assert f"{small_disk / 'jobs.db'}: database or disk is full" in str(refused)
        # Over the websocket: an error reply that names it; the connection keeps serving.
        async with Client(rt.server_url) as client:
            with pytest.raises(StoreUnavailable, match="disk is full"):
                await client.enqueue("gated", {"pad": "x" * 4_000})
            assert len(await client.list_jobs(queue="gated", limit=500)) == 3 + len(accepted)

            # The held jobs finish while the disk is full: their completions cannot be
            # written, so they stay running (retried in the background), and nothing is
            # lost or reported done before it is stored.
            caplog.clear()
            gated.gate.set()
            with anyio.fail_after(10):
                await wait_until(lambda: "write failed, retrying" in caplog.text)
            assert {(await rt.job(j.id)).status for j in held} == {JobStatus.RUNNING}

            ballast.unlink()
            for job in held:
                assert (await rt.wait(job.id, timeout=20)).status is JobStatus.COMPLETED
            later = await client.enqueue("gated", {"after": True})
            assert (await client.wait(later.id, timeout=20)).result == {"after": True}
        for job_id in accepted:
            assert (await rt.wait(job_id, timeout=20)).status is JobStatus.COMPLETED
        ids = [j.id for j in await rt.list_jobs(queue="gated", limit=1_000)]
        assert sorted(ids) == sorted([j.id for j in held] + accepted + [later.id])


WITHOUT_PRIVATE_EXECUTE = """
import sys, anyio
from conveyor import Queue, Runtime
from conveyor.store.sqlite import _connections, _file

# As the probe answers with an aiosqlite release that lacks Connection._execute (aiosqlite
# itself calls it internally, so deleting it would break aiosqlite, not simulate a release).
_connections.AIOSQLITE_RUNS_FUNCTIONS = False
threads = []
_open = _connections.open_writer
async def open_writer(*args, **kwargs):
    writer = await _open(*args, **kwargs)
    threads.append(type(writer).__name__)
    return writer
_file.open_writer = open_writer

class Double(Queue):
    name = "double"
    async def handle_item(self, item):
        return item * 2

async def main():
    async with Runtime(sys.argv[1], queues=[Double()]) as rt:
        jobs = await rt.enqueue_many("double", [1, 2, 3])
        with anyio.fail_after(20):
            print(*threads, [(await rt.wait(j.id)).result for j in jobs])

anyio.run(main)
"""


@pytest.mark.timeout(60)
def test_without_aiosqlite_s_private_call_jobs_are_written_through_threads_of_its_own(
    tmp_path: Path,
) -> None:
    """conveyor installs with any aiosqlite release: where one lacks ``_execute``, the
    writers are conveyor's own threads over the public sqlite3 API (the contract suite
    runs that way too, as store kind sqlite-threaded)."""
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PRIVATE_EXECUTE, str(tmp_path / "jobs.db")],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ThreadedConnection"] * 2 + ["[2,", "4,", "6]"]


async def test_the_installed_aiosqlite_writes_on_its_own_threads(tmp_path: Path) -> None:
    """The probe finds the private call on the release CI installs (the newest): the
    default path, the one the benchmarks measure, is aiosqlite's."""
    from conveyor.store.sqlite._connections import AIOSQLITE_RUNS_FUNCTIONS, AiosqliteWriter

    assert AIOSQLITE_RUNS_FUNCTIONS
    store = SQLiteStore(tmp_path / "jobs.db")
    await store.open("me")
    try:
        assert isinstance(store.file._writer, AiosqliteWriter)
    finally:
        await store.close()
