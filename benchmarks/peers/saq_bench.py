"""SAQ on Redis (127.0.0.1:6379), N no-op jobs end to end.

50 concurrent producers enqueue one job per call while an in-process worker
(concurrency 50) runs them; the clock stops when it has run them all. Redis here keeps
nothing on disk: this is SAQ at its fastest, not durable. Latency is enqueue -> start.
"""

from __future__ import annotations

import asyncio
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from saq import Queue, Worker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, jobs_argument

tally = Tally(jobs_argument())


async def noop(ctx: dict[str, Any], *, t: float) -> None:
    tally.ran(t)


async def main() -> None:
    queue = Queue.from_url("redis://127.0.0.1:6379", name=f"conveyor-bench-{time.time_ns()}")
    await queue.connect()
    worker = Worker(queue, functions=[noop], concurrency=50)
    worker.SIGNALS = []  # the benchmark stops it itself
    runner = asyncio.create_task(worker.start())
    started = time.perf_counter()

    await tally.produce(lambda: queue.enqueue("noop", t=time.perf_counter()))
    await asyncio.wait_for(tally.done.wait(), 600)
    elapsed = time.perf_counter() - started
    await asyncio.wait_for(worker.stop(), 10)
    runner.cancel()
    await queue.disconnect()
    tally.report(f"saq {version('saq')} (Redis, no fsync)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
