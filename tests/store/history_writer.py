"""A writer process for test_postgres_history.py: it appends history rows to its own
jobs the way every PostgreSQL write does (HistoryWriter.change), each change in a
transaction that takes its id, waits, writes, and waits again before it commits, so that
the writers' transactions start, write (twice each) and commit in interleaved orders.

Usage: python history_writer.py LOCATION JOB_IDS_JSON SCHEDULE_JSON; it prints ready,
then starts at a line on its stdin.
SCHEDULE_JSON: [[ms before the write, rows, ms before the commit], ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anyio

from conveyor.store import PostgresStore
from conveyor.store.postgres._db import Connection


async def main(location: str, job_ids: list[str], schedule: list[list[int]]) -> None:
    store = PostgresStore(location)
    await store.open(f"writer-{os.getpid()}")
    t = store.writes.t
    touch = (
        f"UPDATE {t}jobs SET updated_at = $1 WHERE id = ANY($2::text[])"
        " RETURNING id AS h_job_id, queue AS h_queue, status AS h_status,"
        " $1::float8 AS h_at, 'touched'::text AS h_message"
    )
    try:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # all start together
        for before_ms, rows, after_ms in schedule:

            async def body(
                conn: Connection, before: int = before_ms, n: int = rows, after: int = after_ms
            ) -> Any:
                await conn.execute("SELECT pg_current_xact_id()")  # its id, from now
                await anyio.sleep(before / 1000)
                # Two writes in the transaction, as an application enqueueing twice:
                # the second's seqs go on from the first's.
                for part in (job_ids[:n], job_ids[: max(1, n // 2)]):
                    await store.writes.history.change(
                        touch, [time.time(), part], order_by="h_job_id", conn=conn
                    )
                await anyio.sleep(after / 1000)  # written, not yet committed

            await store.db.write(body)
    finally:
        await store.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))
