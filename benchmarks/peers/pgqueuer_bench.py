"""PgQueuer on PostgreSQL (127.0.0.1, synchronous_commit on: durable), N no-op jobs end
to end.

A fresh database each run. 50 concurrent producers enqueue one job per call while an
in-process QueueManager (batch_size 10, LISTEN/NOTIFY) runs them; the clock stops when it
has run them all. Latency is enqueue -> task start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
import time
from pathlib import Path

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries, __version__

sys.path.insert(0, str(Path(__file__).parent))
from _common import fresh_postgres_database, report

JOBS = 0
latencies: list[float] = []
done = asyncio.Event()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    global JOBS
    jobs = JOBS = parser.parse_args().jobs // 50 * 50

    dsn = await fresh_postgres_database("conveyor_bench_pgqueuer")
    worker_conn = await asyncpg.connect(dsn)
    producer_pool = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
    await Queries(AsyncpgDriver(worker_conn)).install()
    pgq = PgQueuer(AsyncpgDriver(worker_conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        (t,) = struct.unpack("d", job.payload or b"")
        latencies.append(time.perf_counter() - t)
        if len(latencies) == JOBS:
            done.set()

    worker = asyncio.create_task(pgq.run(batch_size=10))
    started = time.perf_counter()

    async def produce(count: int) -> None:
        for _ in range(count):
            async with producer_pool.acquire() as conn:
                queries = Queries(AsyncpgDriver(conn))
                await queries.enqueue("noop", struct.pack("d", time.perf_counter()))

    await asyncio.gather(*(produce(jobs // 50) for _ in range(50)))
    await done.wait()
    elapsed = time.perf_counter() - started
    pgq.shutdown.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 10)
    await producer_pool.close()
    await worker_conn.close()
    report(f"pgqueuer {__version__} (PostgreSQL)", jobs, elapsed, latencies)


if __name__ == "__main__":
    asyncio.run(main())
