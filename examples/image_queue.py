"""An image queue with a plain (sync) handler: it runs in a worker thread, so blocking
work is fine, and it stops at its next check_cancelled() when cancelled.

Run: python examples/image_queue.py
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from conveyor import Queue, Runtime


def load_image(path: str) -> list[list[int]]:
    time.sleep(0.1)  # blocking I/O: fine in a sync handler
    return [[(x * y) % 256 for x in range(64)] for y in range(48)]


def resize(image: list[list[int]], size: tuple[int, int]) -> list[list[int]]:
    width, height = size
    rows, cols = len(image), len(image[0])
    return [
        [image[y * rows // height][x * cols // width] for x in range(width)] for y in range(height)
    ]


class ImageQueue(Queue):
    name = "image_processing"
    worker_count = 4  # up to 4 images at once

    def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        file_path = item["file_path"]
        width, height = item.get("resize_to", (800, 600))

        self.report_progress(current=1, total=3, message="Loading image...")
        image = load_image(file_path)
        self.check_cancelled()

        self.report_progress(current=2, total=3, message="Resizing...")
        resized = resize(image, (width // 10, height // 10))
        self.check_cancelled()

        self.report_progress(current=3, total=3, message="Saving...")
        time.sleep(0.05)
        return {"output": file_path.replace(".jpg", f"_{width}x{height}.jpg"), "rows": len(resized)}


async def main() -> None:
    async with Runtime("examples.db", queues=[ImageQueue()]) as rt:
        jobs = await rt.enqueue_many(
            "image_processing",
            [{"file_path": f"/photos/{n}.jpg", "resize_to": (1200, 800)} for n in range(8)],
        )
        slow = jobs[-1]
        await rt.request_job_cancel("image_processing", slow.id)
        for job in jobs:
            done = await rt.wait(job.id, timeout=30)
            print(f"{done.payload['file_path']}: {done.status.value} {done.result or ''}")


if __name__ == "__main__":
    anyio.run(main)
