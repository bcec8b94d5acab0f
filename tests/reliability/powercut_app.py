"""The application the power cut interrupts: enqueue jobs one at a time, forever, and
run them. Prints ``E <id>`` once an enqueue returned (acknowledged) and ``C <id>`` once a
completion was committed (its event comes from the committed history).

Usage: python powercut_app.py DB FULL|NORMAL
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from conveyor import JobStatus, Queue, Runtime
from conveyor.store import SQLiteStore


class Noop(Queue):
    name = "noop"
    worker_count = 4

    async def handle_item(self, item: Any) -> Any:
        return item


async def main() -> None:
    store = SQLiteStore(sys.argv[1], synchronous=sys.argv[2])  # type: ignore[arg-type]
    async with Runtime(store, queues=[Noop()]) as rt:
        print("ready", flush=True)

        async def report_completions() -> None:
            async with rt.events(statuses=[JobStatus.COMPLETED]) as stream:
                async for event in stream:
                    print(f"C {event.job_id}", flush=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(report_completions)
            n = 0
            while True:
                job = await rt.enqueue("noop", n)
                print(f"E {job.id}", flush=True)
                n += 1


if __name__ == "__main__":
    anyio.run(main)
