"""The SQLite store on real files: locks, read-only files, schema versions, indexes."""

from __future__ import annotations

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
from conveyor.store._sqlite_schema import MIGRATIONS

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
