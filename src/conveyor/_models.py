"""The records conveyor stores and sends: all frozen msgspec Structs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from ._states import JobStatus


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How far a running job has come, as last reported by its handler."""

    current: int | float = 0
    total: int | float | None = None
    message: str | None = None


NO_PROGRESS = Progress()


class EnqueueOptions(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a caller asks for a job to be stored, as given: ``Runtime.enqueue``, the
    Client and the wire's ``enqueue`` all carry these, and the runtime that stores the
    job checks them (see Runtime.enqueue for each option's meaning)."""

    created_by: str | None = None
    priority: int = 0
    delay: float | timedelta | None = None  # seconds (on the wire: a number, or ISO 8601)
    at: datetime | None = None  # aware (on the wire: RFC 3339 with a time zone)
    max_attempts: int | None = None  # None: the queue's
    timeout: float | None = None  # seconds; None: the queue's
    unique_key: str | None = None  # one job per key while it is unfinished
    meta: dict[str, str] | None = None  # str -> str, see Runtime.enqueue
    tags: list[str] | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One job, as stored. ``payload`` and ``result`` are plain JSON values."""

    id: str
    queue: str
    status: JobStatus
    payload: Any
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    progress: Progress = NO_PROGRESS
    attempts: int = 0
    max_attempts: int = 1
    priority: int = 0
    created_by: str | None = None
    # What the application said about the job beside its payload (see Runtime.enqueue):
    # kept as given for the job's whole life, retries and reruns included.
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    tags: list[str] = msgspec.field(default_factory=list)
    created_at: datetime
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    timeout: float | None = None


class RunOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one run of a job ended, as a queue's ``after_run`` hook receives it.

    ``status``: ``completed``; ``failed`` (for good); ``scheduled`` (failed, a retry
    follows); ``cancelled``; ``queued`` (put back: the worker was stopping); or None when
    nothing was written (another worker had taken the job over). ``error``: the error
    text of a failed run (as stored), else None.
    """

    status: JobStatus | None
    error: str | None = None


class QueueState(msgspec.Struct, frozen=True, kw_only=True):
    """A queue as the fleet sees it: whether it is paused (no process starts its jobs;
    enqueues are still taken, running jobs finish), since when and by whom, and its jobs
    per status."""

    name: str
    paused: bool = False
    paused_at: datetime | None = None
    paused_by: str | None = None
    counts: dict[JobStatus, int] = msgspec.field(default_factory=dict)


class WorkerState(msgspec.Struct, frozen=True, kw_only=True):
    """A runtime running workers, as the workers view shows it: who and where it is, the
    queues it runs with their concurrency, and how long ago it last heartbeat. ``lost``:
    silent for longer than its lease, or its process (on the reader's machine) is gone;
    the other workers then rescue its jobs."""

    id: str
    host: str
    pid: int
    queues: dict[str, int]
    version: str
    started_at: datetime
    last_heartbeat: datetime
    heartbeat_age: float  # seconds
    lost: bool


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One transition in a job's audit trail. ``seq`` is global and increasing."""

    seq: int
    job_id: str
    status: JobStatus
    at: datetime
    message: str | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="event"):
    """A ``queue.job.changed`` event: a transition, or a progress report (same status).

    ``seq`` is the id of the job's latest history row; progress events repeat the seq of
    the transition before them, so ``seq`` never decreases for one job.
    """

    event: Literal["queue.job.changed"] = "queue.job.changed"
    seq: int
    job_id: str
    queue: str
    status: JobStatus
    progress: Progress = NO_PROGRESS
    at: datetime
    message: str | None = None
