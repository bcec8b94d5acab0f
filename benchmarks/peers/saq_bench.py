"""SAQ on Redis (127.0.0.1:6379), N no-op jobs end to end.

50 concurrent producers enqueue one job per call while an in-process worker
(concurrency 50) runs them; the clock stops when it has run them all. Redis here keeps
nothing on disk: this is SAQ at its fastest, not durable. Latency is enqueue -> start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from saq import Queue, Worker

sys.path.insert(0, str(Path(__file__).parent))
from _common import report

JOBS = 0
latencies: list[float] = []
done = asyncio.Event()


async def noop(ctx: dict[str, Any], *, t: float) -> None:
    latencies.append(time.perf_counter() - t)
    if len(latencies) == JOBS:
        done.set()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    global JOBS
    jobs = JOBS = parser.parse_args().jobs // 50 * 50

    queue = Queue.from_url("redis://127.0.0.1:6379", name=f"conveyor-bench-{time.time_ns()}")
    await queue.connect()
    worker = Worker(queue, functions=[noop], concurrency=50)
    worker.SIGNALS = []  # the benchmark stops it itself
    runner = asyncio.create_task(worker.start())
    started = time.perf_counter()

    async def produce(count: int) -> None:
        for _ in range(count):
            await queue.enqueue("noop", t=time.perf_counter())

    await asyncio.gather(*(produce(jobs // 50) for _ in range(50)))
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await asyncio.wait_for(worker.stop(), 10)
    runner.cancel()
    await queue.disconnect()
    report(f"saq {version('saq')} (Redis, no fsync)", jobs, elapsed, latencies)


if __name__ == "__main__":
    asyncio.run(main())
