"""arq on Redis (127.0.0.1:6379): N no-op jobs end to end.

Jobs are enqueued by 50 concurrent producers while an in-process worker with max_jobs=200
and poll_delay=0.01 runs; the clock stops when the worker has run them all. Redis here
keeps nothing on disk: this is arq at its fastest, not durable.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, jobs_argument

QUEUE = "conveyor-bench:arq"
tally = Tally(jobs_argument())


async def noop(ctx: dict[str, Any], t: float) -> None:
    tally.ran(t)


async def main() -> None:
    redis = await create_pool(RedisSettings(host="127.0.0.1"))
    await redis.delete(QUEUE)
    worker = Worker(
        functions=[noop],  # type: ignore[list-item]
        redis_pool=redis,
        queue_name=QUEUE,
        max_jobs=200,
        poll_delay=0.01,
        handle_signals=False,
        keep_result=60,
    )
    runner = asyncio.create_task(worker.async_run())
    started = time.perf_counter()

    await tally.produce(lambda: redis.enqueue_job("noop", time.perf_counter(), _queue_name=QUEUE))
    await tally.done.wait()
    elapsed = time.perf_counter() - started
    await worker.close()
    runner.cancel()
    tally.report("arq 0.28 (Redis, no fsync)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
