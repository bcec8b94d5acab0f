"""What conveyor is measured against on its own store, in the same sitting:

- ``store_only``: the store alone (store-e2e), insert, claim and finish through
  conveyor's own store, 1,000 jobs per transaction, no engine, no handlers, no events;
- ``raw_one_by_one``: raw sqlite3 (the standard library's module, no event loop, no
  thread hop), WAL and synchronous=FULL as conveyor opens its file, conveyor's own schema,
  one job row and its history row per committed transaction: what one awaited enqueue
  at a time could at best be.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any


async def store_only(jobs: int, db: str) -> float:
    """Seconds to insert, claim and finish ``jobs`` jobs, 1,000 per transaction."""
    from conveyor import JobStatus
    from conveyor._ids import IdGenerator
    from conveyor._models import NO_PROGRESS
    from conveyor.store import ClaimParams, Finish, NewJob, store_at

    store = store_at(db)
    await store.open("bench")
    ids = IdGenerator()
    started = time.perf_counter()
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        now = time.time()
        await store.writes.jobs_insert(
            [
                NewJob(
                    id=ids.new(),
                    queue="bench",
                    status=JobStatus.QUEUED,
                    payload=b"{}",
                    created_at=now,
                )
                for _ in range(n)
            ]
        )
        claim = ClaimParams(
            queue="bench", limit=n, owner="bench", token="t", now=now, lease_expires_at=now + 30
        )
        claimed, _ = await store.writes.jobs_claim(claim)
        finishes = [
            Finish(job_id=job.id, token="t", status=JobStatus.COMPLETED, progress=NO_PROGRESS)
            for job in claimed
        ]
        await store.writes.jobs_finish(finishes, time.time())
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


def raw_one_by_one(jobs: int, path: str) -> float:
    """Seconds to commit ``jobs`` jobs one at a time with raw sqlite3: each transaction
    inserts one row in conveyor's jobs table and one in its job_history (the columns
    conveyor's enqueue writes), then commits with synchronous=FULL (an fsync of the WAL)."""
    from conveyor._ids import IdGenerator
    from conveyor.store.sqlite._schema import MIGRATIONS

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        conn.execute("PRAGMA synchronous = FULL")
        for migration in MIGRATIONS:
            conn.executescript(migration)
        ids = IdGenerator()
        payload = b'{"t":0.0}'
        started = time.perf_counter()
        for _ in range(jobs):
            job_id, now = ids.new(), time.time()
            row: tuple[Any, ...] = (job_id, "bench", "queued", payload, 0, 1, None, now, None, now)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO jobs (id, queue, status, payload, priority, max_attempts,"
                " created_by, created_at, scheduled_at, updated_at, timeout, unique_key,"
                " meta, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
                row,
            )
            conn.execute(
                "INSERT INTO job_history (job_id, queue, status, at, message, origin)"
                " VALUES (?, ?, ?, ?, NULL, ?) RETURNING seq",
                (job_id, "bench", "queued", now, "bench"),
            ).fetchall()
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()
