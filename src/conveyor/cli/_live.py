"""Live progress in the terminal, for ``conveyor watch`` and ``conveyor demo``.

On a terminal: one rich progress bar per job, finished ones fading out after a while so
a long stream stays on one screen. Piped: one plain line per event, for logs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from .._models import Event
from .._states import JobStatus
from ._render import console

KEEP_FINISHED = 8.0  # seconds a finished job's bar stays
MAX_ROWS = 16  # bars on screen; the oldest finished go first
STYLES = {
    JobStatus.SCHEDULED: "bright_black",
    JobStatus.QUEUED: "bright_black",
    JobStatus.RUNNING: "cyan",
    JobStatus.CANCELLING: "yellow",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
}


def event_line(event: Event) -> str:
    p = event.progress
    done = f"{p.current:g}/{p.total:g}" if p.total else ""
    message = p.message or event.message or ""
    return f"{event.job_id} {event.queue} {event.status.value} {done} {message}".rstrip()


async def show(events: AsyncIterator[Event]) -> None:
    """Render events until the stream ends (or the caller cancels)."""
    if not console.is_terminal:
        async for event in events:
            console.print(event_line(event), markup=False, highlight=False)
        return
    await _bars(events)


async def _bars(events: AsyncIterator[Event]) -> None:
    from rich.progress import BarColumn, Progress, TaskID, TextColumn

    bars = Progress(
        TextColumn("{task.fields[queue]:<16.16} [dim]…{task.fields[job_id]}"),
        BarColumn(bar_width=24),
        TextColumn("[{task.fields[style]}]{task.fields[status]:<10}"),
        TextColumn("{task.description}", markup=False),
        console=console,
        auto_refresh=True,
        refresh_per_second=8,
    )
    tasks: dict[str, TaskID] = {}
    finished: dict[str, float] = {}  # job id -> when it finished

    def prune(now: float) -> None:
        for job_id, at in sorted(finished.items(), key=lambda item: item[1]):
            if now - at < KEEP_FINISHED and len(tasks) <= MAX_ROWS:
                break
            bars.remove_task(tasks.pop(job_id))
            del finished[job_id]

    with bars:
        async for event in events:
            fields: dict[str, Any] = {
                "queue": event.queue,
                "job_id": event.job_id[-8:],  # the id's random tail tells jobs apart
                "status": event.status.value,
                "style": STYLES[event.status],
            }
            p = event.progress
            share = min(p.current / p.total, 1.0) if p.total else 0.0
            if event.status is JobStatus.COMPLETED:
                share = 1.0
            completed = round(share * 100)  # percent: the bar's total is 100
            description = p.message or event.message or ""
            task = tasks.get(event.job_id)
            if task is None:
                tasks[event.job_id] = bars.add_task(
                    description, total=100, completed=completed, **fields
                )
            else:
                bars.update(task, description=description, total=100, completed=completed, **fields)
            if event.status.is_terminal:
                finished[event.job_id] = time.monotonic()
            else:
                finished.pop(event.job_id, None)
            prune(time.monotonic())
