"""Procrastinate on PostgreSQL (127.0.0.1, synchronous_commit on: durable), N no-op
jobs end to end.

A fresh database each run. 50 concurrent producers defer one job per call while an
in-process worker (concurrency 50, LISTEN/NOTIFY, jobs kept) runs them; the clock stops
when the worker has run them all. Latency is enqueue -> task start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import procrastinate

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, fresh_postgres_database, jobs_argument

tally = Tally(jobs_argument())


async def main() -> None:
    dsn = await fresh_postgres_database("conveyor_bench_procrastinate")
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=4, max_size=20)
    )

    @app.task(queue="bench")
    async def noop(t: float) -> None:
        tally.ran(t)

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["bench"],
                concurrency=50,
                install_signal_handlers=False,
                delete_jobs="never",
            )
        )
        started = time.perf_counter()

        await tally.produce(lambda: noop.defer_async(t=time.perf_counter()))
        await tally.done.wait()
        elapsed = time.perf_counter() - started
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    tally.report(f"procrastinate {procrastinate.__version__} (PostgreSQL)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
