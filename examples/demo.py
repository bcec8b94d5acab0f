"""The demo behind `make demo`: the seeds' three queues on the default SQLite file
(conveyor.db), a stream of jobs, and their progress drawn live in the terminal.

Some jobs fail (an export with nothing to export), one is cancelled while it runs, and
every job's record and history stay in conveyor.db afterwards.
"""

from __future__ import annotations

import sys
import time

import anyio
from export_queue import ExportQueue
from image_queue import ImageQueue
from training_job import TrainingPayload, TrainingQueue

from conveyor import Event, JobStatus, Runtime

BAR = 24
COLORS = {
    JobStatus.QUEUED: "\x1b[90m",
    JobStatus.RUNNING: "\x1b[36m",
    JobStatus.CANCELLING: "\x1b[33m",
    JobStatus.COMPLETED: "\x1b[32m",
    JobStatus.FAILED: "\x1b[31m",
    JobStatus.CANCELLED: "\x1b[33m",
}


class Board:
    """One line per job, redrawn in place on a terminal; plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.lines: dict[str, str] = {}
        self.drawn = 0

    def update(self, label: str, event: Event) -> None:
        p = event.progress
        fraction = (p.current / p.total) if p.total else (1.0 if event.status.is_terminal else 0)
        if event.status is JobStatus.COMPLETED:
            fraction = 1.0
        filled = int(fraction * BAR)
        bar = "#" * filled + "." * (BAR - filled)
        status = event.status.value
        line = f"{label:<28} [{bar}] {status:<10} {p.message or event.message or ''}"
        if self.tty:
            line = f"{COLORS[event.status]}{line}\x1b[0m"
            self.lines[event.job_id] = line
            self.redraw()
        elif self.lines.get(event.job_id) != line:
            self.lines[event.job_id] = line
            print(line, flush=True)

    def redraw(self) -> None:
        out = sys.stdout
        if self.drawn:
            out.write(f"\x1b[{self.drawn}F")
        for line in self.lines.values():
            out.write(f"\x1b[2K{line}\n")
        self.drawn = len(self.lines)
        out.flush()


async def main() -> None:
    queues = [ExportQueue(), ImageQueue(), TrainingQueue()]
    started = time.perf_counter()
    async with Runtime("conveyor.db", queues=queues) as rt:
        print("conveyor demo: 3 queues on conveyor.db\n")
        board = Board()
        labels: dict[str, str] = {}
        stream = rt.events()

        jobs = []
        for query in ("sales", "users", "empty"):
            jobs.append(await rt.enqueue("exports", {"query": query}, created_by="demo"))
            labels[jobs[-1].id] = f"export {query}"
        for n in range(4):
            jobs.append(await rt.enqueue("image_processing", {"file_path": f"/photos/{n}.jpg"}))
            labels[jobs[-1].id] = f"image /photos/{n}.jpg"
        for algo, epochs in (("random-forest", 12), ("mlp", 30)):
            payload = TrainingPayload(data_id="data:1", algo=algo, params={"epochs": epochs})
            jobs.append(await rt.enqueue("training", payload, created_by="alice"))
            labels[jobs[-1].id] = f"train {algo}"
        to_cancel = jobs[-1]

        pending = {job.id for job in jobs}
        with anyio.fail_after(60):
            async for event in stream:
                if event.job_id not in labels:
                    continue
                board.update(labels[event.job_id], event)
                if event.job_id == to_cancel.id and event.progress.current == 10:
                    await rt.request_job_cancel("training", to_cancel.id)
                if event.status.is_terminal:
                    pending.discard(event.job_id)
                    if not pending:
                        break

        counts: dict[str, int] = {}
        for job in jobs:
            status = (await rt.wait(job.id)).status.value
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        elapsed = time.perf_counter() - started
        print(f"\n{len(jobs)} jobs in {elapsed:.1f}s: {summary}. Records kept in conveyor.db.")


if __name__ == "__main__":
    anyio.run(main)
