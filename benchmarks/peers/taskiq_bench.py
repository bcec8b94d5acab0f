"""taskiq with taskiq-redis's RedisStreamBroker (127.0.0.1:6379; acknowledged streams):
N jobs, the scenarios of _common.py.

50 concurrent producers send one task per call while an in-process receiver runs them
(max_async_tasks 100 in e2e, --concurrency otherwise). sync: a plain def, run in the
receiver's thread pool of --concurrency threads (sync_workers). progress10: taskiq's
ProgressTracker, set ten times, each written to a RedisAsyncResultBackend (the only
scenario with a result backend). Redis here keeps nothing on disk: not durable.
Latency is enqueue -> start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from taskiq import TaskiqDepends
from taskiq.api import run_receiver_task
from taskiq.depends.progress_tracker import ProgressTracker, TaskState
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

sys.path.insert(0, str(Path(__file__).parent))
from _common import Tally, arguments

args = arguments("e2e", "process", "sleep10", "sync", "progress10")
tally = Tally(args)
broker: Any = RedisStreamBroker(
    "redis://127.0.0.1:6379", queue_name=f"conveyor-bench-{time.time_ns()}"
)
if args.scenario == "progress10":
    broker = broker.with_result_backend(
        RedisAsyncResultBackend("redis://127.0.0.1:6379", result_ex_time=600)
    )


@broker.task(task_name="noop")
async def noop(t: float) -> None:
    tally.ran(t)
    if args.scenario == "sleep10":
        await asyncio.sleep(0.01)


@broker.task(task_name="noop_sync")
def noop_sync(t: float) -> None:
    tally.ran(t)


@broker.task(task_name="progress")
async def progress(t: float, tracker: ProgressTracker[int] = TaskiqDepends()) -> None:  # noqa: B008
    tally.ran(t)
    for step in range(1, 11):
        await tracker.set_progress(TaskState.STARTED, step)


async def main() -> None:
    await broker.startup()
    task = {"sync": noop_sync, "progress10": progress}.get(args.scenario, noop)
    receivers: list[asyncio.Task[None]] = []
    elapsed = await tally.run(
        lambda: task.kiq(time.perf_counter()),
        lambda: receivers.append(
            asyncio.create_task(
                run_receiver_task(
                    broker,
                    max_async_tasks=100 if args.scenario == "e2e" else args.concurrency,
                    sync_workers=args.concurrency,
                )
            )
        ),
    )
    tally.report(f"taskiq {version('taskiq')} (Redis streams, no fsync)", elapsed)
    # The receiver does not always end on cancel (it logs and keeps a task running):
    # bounded cleanup, then leave.
    receivers[0].cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(receivers[0]), 5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(broker.shutdown(), 5)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
