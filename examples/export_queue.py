"""An export queue: at most two exports at once, progress per step, cancellable.

Run: python examples/export_queue.py
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import anyio

from conveyor import JobStatus, Queue, Runtime

OUT = Path("exports")


async def fetch_rows(query: str) -> list[dict[str, Any]]:
    await anyio.sleep(0.2)  # stands in for a database query
    if query == "empty":
        return []
    return [{"id": i, "query": query, "value": i * i} for i in range(100)]


class ExportQueue(Queue):
    name = "exports"
    worker_count = 2

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        self.report_progress(current=1, total=3, message="Starting export...")
        rows = await fetch_rows(item["query"])
        self.check_cancelled()
        if not rows:
            self.fail_job(error="nothing to export")

        self.report_progress(current=2, total=3, message="Writing CSV...")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        path = OUT / f"{item['query']}.csv"
        await anyio.Path(OUT).mkdir(exist_ok=True)
        await anyio.Path(path).write_text(buffer.getvalue())

        self.report_progress(current=3, total=3, message="Done")
        return {"download_url": f"/downloads/{path.name}", "rows": len(rows)}


async def main() -> None:
    async with Runtime("examples.db", queues=[ExportQueue()]) as rt:
        jobs = await rt.enqueue_many(
            "exports", [{"query": "sales"}, {"query": "users"}, {"query": "empty"}]
        )
        for job in jobs:
            done = await rt.wait(job.id, timeout=30)
            outcome = done.result if done.status is JobStatus.COMPLETED else done.error
            print(f"{done.payload['query']:>6}: {done.status.value:<9} {outcome}")


if __name__ == "__main__":
    anyio.run(main)
