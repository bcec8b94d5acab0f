"""PgQueuer on PostgreSQL (127.0.0.1, synchronous_commit on: durable), N no-op jobs end
to end.

A fresh database each run. 50 concurrent producers enqueue one job per call while an
in-process QueueManager (batch_size 10, LISTEN/NOTIFY) runs them; the clock stops when it
has run them all. Latency is enqueue -> task start.
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
from _common import Tally, fresh_postgres_database, jobs_argument

tally = Tally(jobs_argument())


async def main() -> None:
    dsn = await fresh_postgres_database("conveyor_bench_pgqueuer")
    worker_conn = await asyncpg.connect(dsn)
    producer_pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    await Queries(AsyncpgDriver(worker_conn)).install()
    pgq = PgQueuer(AsyncpgDriver(worker_conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        (t,) = struct.unpack("d", job.payload or b"")
        tally.ran(t)

    worker = asyncio.create_task(pgq.run(batch_size=10))
    started = time.perf_counter()

    async def enqueue_one() -> None:
        async with producer_pool.acquire() as conn:
            queries = Queries(AsyncpgDriver(conn))
            await queries.enqueue("noop", struct.pack("d", time.perf_counter()))

    await tally.produce(enqueue_one)
    await tally.done.wait()
    elapsed = time.perf_counter() - started
    pgq.shutdown.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 10)
    await producer_pool.close()
    await worker_conn.close()
    tally.report(f"pgqueuer {__version__} (PostgreSQL)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
