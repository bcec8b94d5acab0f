"""``conveyor demo``: the seeds' three queues on a SQLite file, a never-ending varied
stream of jobs, the dashboard, and live progress bars in the terminal.

The stream is what an operator sees on a normal day: exports (an empty one fails),
image processing (a flaky storage fails some first attempts, which are retried) and a
typed training job (some are cancelled while they run). Ctrl-C stops it within seconds:
running jobs get a second to finish (an export may still fail, as it would have); those
still running then go back to the queue and finish on the next start.
"""

from __future__ import annotations

import argparse
import random
import time
import zlib
from typing import Any, Literal

import anyio
import msgspec

from .. import backoff
from .._context import current_job
from .._queue import Queue
from .._runtime import Runtime
from .._states import JobStatus
from .._urls import without_password
from ._live import show
from ._logs import add_log_level_option
from ._serve import page_url
from ._usage import (
    DEFAULT_PORT,
    add_database_option,
    add_listen_options,
    duration,
    positive_number,
)


class ExportQueue(Queue[dict[str, Any]]):
    name = "exports"
    worker_count = 2

    async def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:
        query = str(item["query"])
        self.report_progress(current=1, total=3, message="Starting export...")
        await anyio.sleep(random.uniform(0.5, 1.5))
        rows = 0 if query == "empty" else random.randint(100, 5000)
        self.report_progress(current=2, total=3, message=f"Writing {rows} rows...")
        self.check_cancelled()
        if not rows:
            self.fail_job(error=f"query {query!r} returned no rows: nothing to export")
        await anyio.sleep(random.uniform(0.5, 1.5))
        self.report_progress(current=3, total=3, message="Done")
        return {"download_url": f"/downloads/{query}.csv", "rows": rows}


class FlakyStorage(ConnectionError):
    """The image store dropped the connection (retried: see ImageQueue.retry_on)."""


class ImageQueue(Queue[dict[str, Any]]):
    name = "image_processing"
    worker_count = 3
    max_attempts = 3
    backoff = backoff.constant(1.0)
    retry_on = (FlakyStorage,)

    def handle_item(self, item: dict[str, Any]) -> dict[str, Any]:  # runs in a thread
        steps = ("Loading image...", "Resizing...", "Sharpening...", "Saving...")
        for step, message in enumerate(steps, 1):
            self.check_cancelled()
            self.report_progress(current=step, total=len(steps), message=message)
            time.sleep(random.uniform(0.2, 0.6))  # blocking work is fine in a thread
            if step == 1 and current_job().attempts == 1 and random.random() < 0.3:
                raise FlakyStorage(f"storage dropped {item['file_path']}")
        return {"path": item["file_path"].replace(".jpg", "_800x600.jpg")}


class TrainingPayload(msgspec.Struct):
    data_id: str
    algo: Literal["random-forest", "mlp", "gradient-boosting"]
    epochs: int = 10


class TrainingQueue(Queue[TrainingPayload]):
    name = "training"
    worker_count = 2

    async def handle_item(self, item: TrainingPayload) -> dict[str, Any]:
        loss = 1.0
        for epoch in range(1, item.epochs + 1):
            self.check_cancelled()
            await anyio.sleep(0.3)
            loss *= random.uniform(0.8, 0.97)
            self.report_progress(epoch, item.epochs, f"epoch {epoch}: loss {loss:.3f}")
        return {"model_id": f"{item.algo}-{item.data_id}", "loss": round(loss, 4)}


def demo_queues() -> list[Queue[Any]]:
    return [ExportQueue(), ImageQueue(), TrainingQueue()]


async def produce(rt: Runtime, rate: float) -> None:
    """Enqueue a varied job about ``rate`` times a second, forever."""
    photo = 0
    while True:
        kind = random.choices(("exports", "image_processing", "training"), (3, 4, 2))[0]
        if kind == "exports":
            query = random.choice(("sales", "users", "orders", "invoices", "empty"))
            await rt.enqueue("exports", {"query": query}, created_by="demo")
        elif kind == "image_processing":
            photo += 1
            await rt.enqueue("image_processing", {"file_path": f"/photos/{photo}.jpg"})
        else:
            payload = TrainingPayload(
                data_id=f"data:{random.randint(1, 9)}",
                algo=random.choice(("random-forest", "mlp", "gradient-boosting")),
                epochs=random.randint(8, 20),
            )
            await rt.enqueue("training", payload, created_by="alice", priority=1)
        await anyio.sleep(random.expovariate(rate))


async def cancel_some(rt: Runtime) -> None:
    """Cancel about one training job in four, a few epochs into its run."""
    async with rt.events(queue="training", statuses=[JobStatus.RUNNING]) as stream:
        async for event in stream:
            doomed = zlib.crc32(event.job_id.encode()) % 4 == 0  # stable per job
            if doomed and event.progress.current == 4:
                await rt.request_job_cancel("training", event.job_id)


def add_demo_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="sample queues, a stream of jobs, the dashboard and live progress",
        description="Runs the sample queues (exports, image_processing, training) on a"
        " SQLite file with a steady varied stream of jobs: some fail, some are retried,"
        " some are cancelled. Serves the dashboard. Ctrl-C stops it.",
    )
    add_database_option(demo, "conveyor.db")
    add_listen_options(
        demo,
        port_help=f"dashboard port (default {DEFAULT_PORT}; 0: any free one)",
        default=DEFAULT_PORT,
    )
    demo.add_argument("--rate", type=positive_number, default=2.0, help="new jobs per second")
    demo.add_argument("--duration", type=duration, help="stop after this long (e.g. 30s, 5m)")
    add_log_level_option(demo, "WARNING")
    demo.set_defaults(run=lambda a: anyio.run(_demo, a))


async def _demo(args: argparse.Namespace) -> int:
    rt = Runtime(args.db, queues=demo_queues(), shutdown_grace=1.0)
    where = without_password(args.db)
    rt.attach_server(args.host, args.port, token=args.token)
    async with rt:
        print(
            f"conveyor demo: exports, image_processing and training on {where}\n"
            f"conveyor demo: dashboard on {page_url(rt)} ; Ctrl-C to stop",
            flush=True,
        )
        async with rt.events() as everything, anyio.create_task_group() as tg:
            tg.start_soon(produce, rt, args.rate)
            tg.start_soon(cancel_some, rt)
            tg.start_soon(show, everything)
            with anyio.move_on_after(args.duration):
                await rt.run_until_signalled()
            tg.cancel_scope.cancel()
        print(
            f"conveyor demo: stopping; running jobs get {rt.shutdown_grace:g} s to finish,"
            " the rest go back to the queue",
            flush=True,
        )
    print(f"conveyor demo: stopped. Every job's record is kept in {where}", flush=True)
    return 0
