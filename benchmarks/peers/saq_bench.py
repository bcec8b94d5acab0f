"""SAQ on Redis (127.0.0.1:6379): N jobs, the scenarios of _common.py.

e2e: 50 concurrent producers enqueue one job per call while an in-process worker
(concurrency 50) runs them; the other scenarios run at --concurrency. sync: SAQ runs a
plain def in its worker's ThreadPoolExecutor, made with Python's default size
(min(32, cores + 4) threads), which SAQ does not let one set. progress10: job.update(
progress=...) ten times, each a write to Redis. Redis here keeps nothing on disk: this
is SAQ at its fastest, not durable. Latency is enqueue -> start.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from saq import Queue, Worker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, arguments

args = arguments("e2e", "process", "sleep10", "sync", "progress10")
tally = Tally(args)


async def noop(ctx: dict[str, Any], *, t: float) -> None:
    tally.ran(t)
    if args.scenario == "sleep10":
        await asyncio.sleep(0.01)
    elif args.scenario == "progress10":
        for step in range(1, 11):
            await ctx["job"].update(progress=step / 10)


def noop_sync(ctx: dict[str, Any], *, t: float) -> None:
    tally.ran(t)


async def main() -> None:
    queue = Queue.from_url("redis://127.0.0.1:6379", name=f"conveyor-bench-{time.time_ns()}")
    await queue.connect()
    function: Any = noop_sync if args.scenario == "sync" else noop
    worker = Worker(
        queue,
        functions=[("noop", function)],
        concurrency=50 if args.scenario == "e2e" else args.concurrency,
    )
    worker.SIGNALS = []  # the benchmark stops it itself
    runner: list[asyncio.Task[None]] = []
    elapsed = await tally.run(
        lambda: queue.enqueue("noop", t=time.perf_counter()),
        lambda: runner.append(asyncio.create_task(worker.start())),
    )
    await asyncio.wait_for(worker.stop(), 10)
    runner[0].cancel()
    await queue.disconnect()
    threads = min(32, (os.cpu_count() or 1) + 4)
    note = f"{threads} threads (SAQ's pool)" if args.scenario == "sync" else ""
    tally.report(f"saq {version('saq')} (Redis, no fsync)", elapsed, note)


if __name__ == "__main__":
    asyncio.run(main())
