"""A worker process for the crash, shutdown and two-process tests.

Usage: python worker_app.py DB [--lease-ttl S] [--grace S] [--poll-interval S]

DB is a SQLite file or a postgresql:// URL.

Queue "work": the payload says what the handler does:
  {"block": true}   report progress, then wait forever (until cancelled or killed)
  {"sleep": S}      sleep S seconds, then complete
  {"steps": N, "every": S}  report progress "step i" N times, S seconds apart
  {"seconds": S}    a sync handler loop that checks cancellation (queue "sync_work")
Queue "ledger" (PostgreSQL): inside conveyor.transaction(), insert (job id, pid) into the
payload's "table", then sleep "after" seconds (in this process, with "block": wait
forever) before returning: its row and its completion commit together or not at all.
With --periodic, queue "tick" also enqueues a job every 0.1 s.
Results carry the worker's pid, so tests can tell which process finished a job.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio

from conveyor import Queue, Runtime, check_cancelled, current_job, report_progress, transaction


class Work(Queue):
    name = "work"
    worker_count = 4

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        report_progress(1, 2, "started")
        if item.get("block"):
            await anyio.sleep_forever()
        steps = item.get("steps", 0)
        for step in range(1, steps + 1):
            await anyio.sleep(item.get("every", 0.1))
            report_progress(step, steps, f"step {step}")
        await anyio.sleep(item.get("sleep", 0))
        return {"pid": os.getpid()}


class SyncWork(Queue):
    name = "sync_work"
    worker_count = 2

    def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        report_progress(1, 2, "started")
        deadline = time.monotonic() + item.get("seconds", 3600)
        while time.monotonic() < deadline:
            check_cancelled()
            time.sleep(0.01)
        return {"pid": os.getpid()}


IN_WORKER_PROCESS = False  # set by main(): "block" holds only the worker process's runs


class Ledger(Queue):
    name = "ledger"
    worker_count = 4

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        async with transaction() as conn:
            await conn.execute(
                f"INSERT INTO {item['table']} (job_id, pid) VALUES ($1, $2)",
                current_job().id,
                os.getpid(),
            )
        report_progress(1, 1, "written")
        if item.get("block") and IN_WORKER_PROCESS:
            await anyio.sleep_forever()
        await anyio.sleep(item.get("after", 0))
        return {"pid": os.getpid()}


class Tick(Queue):
    """Runs only with --periodic: a job every 0.1 s, from however many workers."""

    name = "tick"
    periodic = 0.1

    async def handle_item(self, item: Any) -> dict[str, Any]:
        return {"pid": os.getpid()}


QUEUES = [Work(), SyncWork(), Ledger()]


async def main() -> None:
    global IN_WORKER_PROCESS
    IN_WORKER_PROCESS = True
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--periodic", action="store_true")
    args = parser.parse_args()
    queues = [*QUEUES, Tick()] if args.periodic else QUEUES
    async with Runtime(
        args.db,
        queues=queues,
        lease_ttl=args.lease_ttl,
        shutdown_grace=args.grace,
        poll_interval=args.poll_interval,
    ) as rt:
        print("ready", flush=True)
        await rt.run_until_signalled()
        print("stopping", flush=True)
    print("stopped", flush=True)


if __name__ == "__main__":
    anyio.run(main)
