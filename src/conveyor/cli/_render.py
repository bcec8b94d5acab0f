"""Output for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .._models import HistoryEntry, Job, QueueState, WorkerState
from .._states import JobStatus

# Piped output keeps whole rows on a line (rich would wrap them to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 240)


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _progress(job: Job) -> str:
    p = job.progress
    if p.total:
        return f"{p.current:g}/{p.total:g}"
    return "" if not p.current else f"{p.current:g}"


def jobs_table(jobs: Sequence[Job]) -> None:
    table = Table("queue", "status", "progress", "attempts", "created", "tags", "error")
    table.columns.insert(0, Column("id", no_wrap=True))
    for job in jobs:
        table.add_row(
            job.id,
            job.queue,
            job.status.value,
            _progress(job),
            f"{job.attempts}/{job.max_attempts}",
            f"{job.created_at:%Y-%m-%d %H:%M:%S}",
            ", ".join(job.tags),
            Text((job.error or "")[:60]),  # a Text: what it holds is not rich markup
        )
    console.print(table)


def queues_table(states: Sequence[QueueState]) -> None:
    statuses = list(JobStatus)
    table = Table("queue", "state", "since", "by", *(s.value for s in statuses))
    for state in states:
        table.add_row(
            state.name,
            "paused" if state.paused else "running",
            "" if state.paused_at is None else f"{state.paused_at:%Y-%m-%d %H:%M:%S}",
            state.paused_by or "",
            *(str(state.counts.get(s, 0)) for s in statuses),
        )
    console.print(table)


def workers_table(workers: Sequence[WorkerState]) -> None:
    table = Table("worker", "state", "host", "pid", "queues", "heartbeat", "started", "version")
    for w in workers:
        table.add_row(
            w.id,
            "lost" if w.lost else "alive",
            w.host,
            str(w.pid),
            ", ".join(f"{name} ({n})" for name, n in sorted(w.queues.items())),
            f"{w.heartbeat_age:.1f}s ago",
            f"{w.started_at:%Y-%m-%d %H:%M:%S}",
            w.version,
        )
    console.print(table)


_SETS = ("meta", "tags")  # left out when empty, as most jobs have neither


def job_details(job: Job, history: Sequence[HistoryEntry]) -> None:
    fields = msgspec.to_builtins(job)
    table = Table("field", "value", show_header=False)
    for key, value in fields.items():
        if key != "traceback" and value not in (None, "") and not (key in _SETS and not value):
            # Payloads, results and progress as the JSON they are, not Python reprs; as
            # Text, so that what they hold is never read as rich markup ("[/x]").
            shown = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            table.add_row(key, Text(shown))
    console.print(table)
    if job.traceback:
        console.print("traceback of the last failed attempt:", style="bold")
        console.print(job.traceback, markup=False, highlight=False)
    timeline = Table("seq", "at", "status", "message")
    for entry in history:
        timeline.add_row(
            str(entry.seq),
            f"{entry.at:%Y-%m-%d %H:%M:%S.%f}",
            entry.status.value,
            entry.message or "",
        )
    console.print(timeline)
