"""Procrastinate on PostgreSQL (127.0.0.1, synchronous_commit on: durable): N jobs, the
scenarios of _common.py that Procrastinate has (no progress reports: no progress10).

A fresh database each run. 50 concurrent producers defer one job per call while an
in-process worker (LISTEN/NOTIFY, jobs kept) runs them, concurrency 50 in e2e and
--concurrency otherwise. sync: a plain def, which Procrastinate runs through asgiref's
sync_to_async (thread_sensitive=False: a thread pool). Latency is enqueue -> task start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import procrastinate

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, arguments, fresh_postgres_database

args = arguments("e2e", "process", "sleep10", "sync")
tally = Tally(args)


async def main() -> None:
    dsn = await fresh_postgres_database("conveyor_bench_procrastinate")
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=4, max_size=20)
    )

    @app.task(queue="bench", name="noop")
    async def noop(t: float) -> None:
        tally.ran(t)
        if args.scenario == "sleep10":
            await asyncio.sleep(0.01)

    @app.task(queue="bench", name="noop_sync")
    def noop_sync(t: float) -> None:
        tally.ran(t)

    task: Any = noop_sync if args.scenario == "sync" else noop
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        workers: list[asyncio.Task[None]] = []
        elapsed = await tally.run(
            lambda: task.defer_async(t=time.perf_counter()),
            lambda: workers.append(
                asyncio.create_task(
                    app.run_worker_async(
                        queues=["bench"],
                        concurrency=50 if args.scenario == "e2e" else args.concurrency,
                        install_signal_handlers=False,
                        delete_jobs="never",
                    )
                )
            ),
        )
        workers[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workers[0]
    tally.report(f"procrastinate {procrastinate.__version__} (PostgreSQL)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
