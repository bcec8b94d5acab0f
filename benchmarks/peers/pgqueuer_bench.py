"""PgQueuer on PostgreSQL (127.0.0.1, synchronous_commit on: durable): N jobs, the
scenarios of _common.py that PgQueuer has (its entrypoints must be async: no sync; no
progress reports: no progress10).

A fresh database each run. 50 concurrent producers enqueue one job per call while an
in-process QueueManager (batch_size 10, LISTEN/NOTIFY) runs them: no concurrency limit
in e2e (PgQueuer's default), the entrypoint's concurrency_limit --concurrency otherwise.
Latency is enqueue -> task start.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
import time
from pathlib import Path

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries, __version__

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, arguments, fresh_postgres_database

args = arguments("e2e", "process", "sleep10")
tally = Tally(args)


async def main() -> None:
    dsn = await fresh_postgres_database("conveyor_bench_pgqueuer")
    worker_conn = await asyncpg.connect(dsn)
    producer_pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    await Queries(AsyncpgDriver(worker_conn)).install()
    pgq = PgQueuer(AsyncpgDriver(worker_conn))

    @pgq.entrypoint("noop", concurrency_limit=0 if args.scenario == "e2e" else args.concurrency)
    async def noop(job: Job) -> None:
        (t,) = struct.unpack("d", job.payload or b"")
        tally.ran(t)
        if args.scenario == "sleep10":
            await asyncio.sleep(0.01)

    async def enqueue_one() -> None:
        async with producer_pool.acquire() as conn:
            queries = Queries(AsyncpgDriver(conn))
            await queries.enqueue("noop", struct.pack("d", time.perf_counter()))

    workers: list[asyncio.Task[None]] = []
    elapsed = await tally.run(
        enqueue_one, lambda: workers.append(asyncio.create_task(pgq.run(batch_size=10)))
    )
    pgq.shutdown.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(workers[0], 10)
    await producer_pool.close()
    await worker_conn.close()
    tally.report(f"pgqueuer {__version__} (PostgreSQL)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
