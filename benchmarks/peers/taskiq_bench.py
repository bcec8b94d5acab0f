"""taskiq with taskiq-redis's RedisStreamBroker (127.0.0.1:6379; acknowledged streams),
N no-op jobs end to end.

50 concurrent producers send one task per call while an in-process receiver
(max_async_tasks 100) runs them; the clock stops when it has run them all. Redis here
keeps nothing on disk: not durable. Latency is enqueue -> start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, jobs_argument

tally = Tally(jobs_argument())
broker = RedisStreamBroker("redis://127.0.0.1:6379", queue_name=f"conveyor-bench-{time.time_ns()}")


@broker.task
async def noop(t: float) -> None:
    tally.ran(t)


async def main() -> None:
    await broker.startup()
    receiver = asyncio.create_task(run_receiver_task(broker, max_async_tasks=100))
    started = time.perf_counter()

    await tally.produce(lambda: noop.kiq(time.perf_counter()))
    await asyncio.wait_for(tally.done.wait(), 600)
    elapsed = time.perf_counter() - started
    tally.report(f"taskiq {version('taskiq')} (Redis streams, no fsync)", elapsed)
    # The receiver does not always end on cancel (it logs and keeps a task running):
    # bounded cleanup, then leave.
    receiver.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(receiver), 5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(broker.shutdown(), 5)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
