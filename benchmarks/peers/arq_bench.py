"""arq on Redis (127.0.0.1:6379): N jobs, the scenarios of _common.py that arq has
(it runs coroutines only, and has no progress reports: no sync, no progress10).

Jobs are enqueued by 50 concurrent producers while an in-process worker with
poll_delay=0.01 runs, max_jobs=200 in e2e and --concurrency otherwise. Redis here keeps
nothing on disk: this is arq at its fastest, not durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, arguments

QUEUE = "conveyor-bench:arq"
args = arguments("e2e", "process", "sleep10")
tally = Tally(args)


async def noop(ctx: dict[str, Any], t: float) -> None:
    tally.ran(t)
    if args.scenario == "sleep10":
        await asyncio.sleep(0.01)


async def main() -> None:
    redis = await create_pool(RedisSettings(host="127.0.0.1"))
    await redis.delete(QUEUE)
    worker = Worker(
        functions=[noop],  # type: ignore[list-item]
        redis_pool=redis,
        queue_name=QUEUE,
        max_jobs=200 if args.scenario == "e2e" else args.concurrency,
        poll_delay=0.01,
        handle_signals=False,
        keep_result=60,
    )
    runner: list[asyncio.Task[None]] = []
    elapsed = await tally.run(
        lambda: redis.enqueue_job("noop", time.perf_counter(), _queue_name=QUEUE),
        lambda: runner.append(asyncio.create_task(worker.async_run())),
    )
    with contextlib.suppress(asyncio.CancelledError):  # its last runs, cancelled
        await worker.close()
    runner[0].cancel()
    tally.report("arq 0.28 (Redis, no fsync)", elapsed)


if __name__ == "__main__":
    asyncio.run(main())
