"""``conveyor watch URL``: live progress of a server's jobs in the terminal."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from .._models import Event
from ..client import Client


def add_watch_command(commands: Any) -> None:
    watch = commands.add_parser("watch", help="live progress bars of a server's jobs")
    watch.add_argument("url", help="the server, e.g. ws://127.0.0.1:8765")
    watch.add_argument("--queue")
    watch.add_argument("--token")
    watch.set_defaults(run=lambda a: anyio.run(_watch, a))


async def _watch(args: argparse.Namespace) -> int:
    from ._render import console

    async with Client(args.url, token=args.token) as client:
        await client.list_jobs(limit=1)  # fail fast, with one line, if unreachable
        events = client.events(queue=args.queue)
        if console.is_terminal:
            await _bars(events)
        else:  # piped: one plain line per event, for logs and scripts
            async for event in events:
                console.print(_line(event), markup=False, highlight=False)
    return 0


def _line(event: Event) -> str:
    p = event.progress
    done = f"{p.current:g}/{p.total:g}" if p.total else ""
    return f"{event.job_id} {event.queue} {event.status.value} {done} {p.message or ''}".rstrip()


async def _bars(events: Any) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    bars = Progress(
        TextColumn("{task.fields[queue]:<16} {task.fields[job_id]}"),
        BarColumn(),
        TextColumn("{task.fields[status]:<10} {task.description}"),
    )
    tasks: dict[str, Any] = {}
    with bars:
        async for event in events:
            p = event.progress
            fields = {"queue": event.queue, "job_id": event.job_id, "status": event.status}
            total = p.total or 1
            completed = p.current if p.total else (1 if event.status.is_terminal else 0)
            if event.status.value == "completed":
                completed = total
            task = tasks.get(event.job_id)
            if task is None:
                task = tasks[event.job_id] = bars.add_task(
                    p.message or "", total=total, completed=completed, **fields
                )
            else:
                bars.update(
                    task, description=p.message or "", total=total, completed=completed, **fields
                )
