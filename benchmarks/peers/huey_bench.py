"""Huey on SQLite with fsync (durable, like conveyor's default): N no-op tasks end to end.

Enqueue N tasks while an in-process consumer with 8 worker threads runs, until every
result is stored. Latency is enqueue -> task start, for every task.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from huey import SqliteHuey

sys.path.insert(0, str(Path(__file__).parent))
from _common import jobs_argument, report


def main() -> None:
    jobs = jobs_argument()
    latencies: list[float] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp:
        huey = SqliteHuey(filename=f"{tmp}/huey.db", fsync=True)

        @huey.task()
        def noop(t: float) -> None:
            with lock:
                latencies.append(time.perf_counter() - t)

        consumer = huey.create_consumer(
            workers=8, worker_type="thread", periodic=False, initial_delay=0.001, max_delay=0.05
        )
        consumer.start()
        started = time.perf_counter()
        for _ in range(jobs):
            noop(time.perf_counter())
        while len(latencies) < jobs or huey.pending_count():
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        consumer.stop(graceful=True)
    report("huey 3.5 (SQLite, fsync)", jobs, elapsed, latencies)


if __name__ == "__main__":
    main()
