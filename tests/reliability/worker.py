"""A worker process for the fault suite.

Usage: python worker.py DB [--lease-ttl S] [--serve PORT] [--synchronous FULL|NORMAL]
       [--retain S]

Queue "soak" (8 at once): reports progress ``steps`` times, ``every`` seconds apart
(payload fields), then completes with this process's pid. Queue "noop": completes at
once. With --serve, the websocket server listens on 127.0.0.1:PORT (0: any free port)
and its URL is printed as ``serving ws://...``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from conveyor import Queue, Runtime, report_progress
from conveyor.store import SQLiteStore, store_at


class Soak(Queue):
    name = "soak"
    worker_count = 8

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        steps = item.get("steps", 0)
        for step in range(1, steps + 1):
            report_progress(step, steps, f"step {step}")
            await anyio.sleep(item.get("every", 0))
        return {"pid": os.getpid()}


class Noop(Queue):
    name = "noop"
    worker_count = 16

    async def handle_item(self, item: Any) -> int:
        return os.getpid()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--serve", type=int)
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--retain", type=float, default=7 * 86400, help="seconds")
    args = parser.parse_args()
    store = (
        store_at(args.db)
        if args.db.startswith("postgres")
        else SQLiteStore(args.db, synchronous=args.synchronous)
    )
    async with Runtime(
        store,
        queues=[Soak(), Noop()],
        lease_ttl=args.lease_ttl,
        shutdown_grace=0,
        retain_completed=args.retain,
        retain_failed=args.retain,
        serve=None if args.serve is None else ("127.0.0.1", args.serve),
    ) as rt:
        if args.serve is not None:
            print(f"serving {rt.server_url}", flush=True)
        print("ready", flush=True)
        await rt.run_until_signalled()


if __name__ == "__main__":
    anyio.run(main)
