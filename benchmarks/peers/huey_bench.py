"""Huey on SQLite with fsync (durable, like conveyor's default): N tasks, the scenarios
of _common.py that Huey has (no progress reports: no progress10).

Huey's tasks are plain functions, each run in one of its consumer's worker threads: 8 in
e2e, --concurrency otherwise; so sync is its e2e at that many threads, and sleep10's
task calls time.sleep(0.01). The clock stops when every task has run and none is
pending. Latency is enqueue -> task start, for every task.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from huey import SqliteHuey

sys.path.insert(0, str(Path(__file__).parent))
from _common import arguments, report


def main() -> None:
    args = arguments("e2e", "process", "sleep10", "sync")
    latencies: list[float] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp:
        huey = SqliteHuey(filename=f"{tmp}/huey.db", fsync=True)

        @huey.task()
        def noop(t: float) -> None:
            with lock:
                latencies.append(time.perf_counter() - t)
            if args.scenario == "sleep10":
                time.sleep(0.01)

        consumer = huey.create_consumer(
            workers=8 if args.scenario == "e2e" else args.concurrency,
            worker_type="thread",
            periodic=False,
            initial_delay=0.001,
            max_delay=0.05,
        )
        if args.scenario == "process":
            for _ in range(args.jobs):
                noop(0.0)
        consumer.start()
        started = time.perf_counter()
        if args.scenario != "process":
            for _ in range(args.jobs):
                noop(time.perf_counter())
        while len(latencies) < args.jobs or huey.pending_count():
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        consumer.stop(graceful=True)
    kept = None if args.scenario == "process" else latencies
    report("huey 3.5 (SQLite, fsync)", args.jobs, elapsed, kept)


if __name__ == "__main__":
    main()
