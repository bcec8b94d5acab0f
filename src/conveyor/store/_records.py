"""The records the store's calls take and return: what goes in (a new job, a claim, a
finish, the params of reads and bulk operations) and what comes back (transitions,
counts, the registry's rows). Plain frozen msgspec Structs, so a backend reads them
without conversion; the protocols that use them are in _base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from .. import _codec
from .._clock import maybe_datetime, to_datetime
from .._models import NO_PROGRESS, Job, Progress
from .._states import TRANSITIONS, JobStatus, Owner

ACTED_ON: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.CANCELLING})
"""The statuses of other runtimes' transitions that a runtime acts on with nobody
subscribed to its events: work to claim, a due time to wait for, a cancel to carry out
(see Engine._react). history_after(..., everything=False) returns only those: a fleet's
worker processes then read one row per job of each other's writes, not every row."""


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job to insert. ``payload`` is already validated and encoded as JSON."""

    id: str
    queue: str
    status: JobStatus
    payload: bytes
    priority: int = 0
    max_attempts: int = 1
    created_by: str | None = None
    created_at: float
    scheduled_at: float | None = None  # set with status SCHEDULED: when it becomes due
    timeout: float | None = None
    unique_key: str | None = None  # while a job with this key is unfinished, no other
    meta: dict[str, str] = msgspec.field(default_factory=dict)  # checked (see _limits.meta)
    tags: list[str] = msgspec.field(default_factory=list)  # checked, no repeats
    derived_id: bool = False  # the id is derived (a periodic tick): if taken, keep that job

    def as_job(self) -> Job:
        """The job this is once inserted, without reading it back."""
        at = to_datetime(self.created_at)
        return Job(
            id=self.id,
            queue=self.queue,
            status=self.status,
            payload=_codec.decode(self.payload),
            priority=self.priority,
            max_attempts=self.max_attempts,
            created_by=self.created_by,
            meta=self.meta,
            tags=self.tags,
            created_at=at,
            scheduled_at=maybe_datetime(self.scheduled_at),
            updated_at=at,
            timeout=self.timeout,
        )


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A committed status change: one history row, ready to become an event."""

    seq: int
    job_id: str
    queue: str
    status: JobStatus
    at: float
    message: str | None = None
    progress: Progress | None = None
    origin: str = ""  # the runtime that wrote it; set by history_after


class ClaimParams(msgspec.Struct, frozen=True, kw_only=True):
    """Claim up to ``limit`` queued jobs of ``queue`` for ``owner`` under ``token``."""

    queue: str
    limit: int
    owner: str
    token: str
    now: float
    lease_expires_at: float


Claimed = tuple[list[Job], list[Transition]]
"""What a claim took: its jobs, and their ``running`` transitions, in the same order."""

EarlyClaims = Callable[[list[Claimed]], None]
"""Told what a write's claims took before its commit is durable (see
StoreWrites.jobs_insert_claiming)."""


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one run, written only while the run still holds its lease token.

    Build one with the named constructors, one per outcome the transition table allows a
    run (``completed``, ``failed``, ``retry``, ``cancelled``, ``requeued``). ``requeued``
    puts the job back (a worker shutting down); ``retry`` schedules it for
    ``scheduled_at``. Either way, a job whose cancellation was requested meanwhile
    becomes CANCELLED instead.
    """

    job_id: str
    token: str
    status: JobStatus
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    progress: Progress
    message: str | None = None
    scheduled_at: float | None = None

    @classmethod
    def completed(cls, job_id: str, token: str, progress: Progress, result: bytes) -> Finish:
        return cls(
            job_id=job_id, token=token, status=JobStatus.COMPLETED, progress=progress, result=result
        )

    @classmethod
    def failed(
        cls,
        job_id: str,
        token: str,
        progress: Progress,
        error: str,
        traceback: str | None = None,
    ) -> Finish:
        """Failed for good, ``error`` kept (and in the history row)."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.FAILED,
            progress=progress,
            error=error,
            traceback=traceback,
            message=error,
        )

    @classmethod
    def retry(
        cls,
        job_id: str,
        token: str,
        progress: Progress,
        *,
        error: str,
        traceback: str | None,
        at: float,
        message: str,
    ) -> Finish:
        """This attempt failed; the job waits ``scheduled`` until ``at``."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.SCHEDULED,
            progress=progress,
            error=error,
            traceback=traceback,
            scheduled_at=at,
            message=message,
        )

    @classmethod
    def cancelled(cls, job_id: str, token: str, progress: Progress) -> Finish:
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.CANCELLED,
            progress=progress,
            message="cancelled",
        )

    @classmethod
    def requeued(cls, job_id: str, token: str, message: str) -> Finish:
        """Back to the queue, to start over (no progress kept)."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.QUEUED,
            progress=NO_PROGRESS,
            message=message,
        )


# Every outcome a constructor above makes is one the table allows a run.
assert {
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.SCHEDULED,
    JobStatus.CANCELLED,
    JobStatus.QUEUED,
} == {dst for src, dst, who in TRANSITIONS if src is JobStatus.RUNNING and who is Owner.EXECUTOR}


class ProgressWrite(msgspec.Struct, frozen=True):
    job_id: str
    token: str
    progress: Progress


class RescueParams(msgspec.Struct, frozen=True, kw_only=True):
    """Rescue jobs whose lease expired before ``expired_before`` (None: only leases of
    dead owners) or whose owner is known dead."""

    now: float
    expired_before: float | None
    dead_owners: Sequence[str] = ()
    max_orphanings: int = 3
    # Jobs the rescuing runtime still runs, or whose outcome it is still writing: never
    # put back by it, whatever their lease says (its lease may have lapsed while the
    # store was out of reach; the outcome on its way decides the job).
    keep: Sequence[str] = ()


class RunningProgress(msgspec.Struct, frozen=True):
    """The stored progress of a running job, and the seq of its latest transition."""

    job_id: str
    queue: str
    seq: int
    progress: Progress | None


class PurgeParams(msgspec.Struct, frozen=True, kw_only=True):
    """Delete jobs in ``statuses`` (terminal ones only) that finished before
    ``finished_before``, optionally of one queue, at most ``limit`` at once."""

    statuses: frozenset[JobStatus]
    finished_before: float
    queue: str | None = None
    limit: int = 1000


class JobMatch(msgspec.Struct, frozen=True, kw_only=True):
    """Which jobs a bulk operation takes, a batch (``limit``) at a time: of ``statuses``
    (only those the operation applies to count), and of the queue, creator and age given.
    ``as_of``: only jobs last changed then or before (a rerun job that fails again is not
    taken again by the same operation)."""

    statuses: frozenset[JobStatus]
    queue: str | None = None
    created_by: str | None = None
    created_before: float | None = None
    as_of: float | None = None
    limit: int = 500


class ListParams(msgspec.Struct, frozen=True, kw_only=True):
    """Newest first; ``before`` is the id of the last job of the previous page. A job
    matches ``tags`` when it has every one of them, ``meta`` when it has every pair
    (values compared exactly)."""

    queue: str | None = None
    status: JobStatus | None = None
    created_by: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    limit: int = 50
    before: str | None = None


class FinishedCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many jobs of ``queue`` ended ``status`` (completed or failed) in one minute,
    ``minute`` counted in minutes since the Unix epoch (``floor(finished_at / 60)``)."""

    minute: int
    queue: str
    status: JobStatus
    count: int


class PausedQueue(msgspec.Struct, frozen=True):
    """A paused queue: since when (Unix seconds) and by whom."""

    at: float
    by: str | None = None


class WorkerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A runtime running workers, as it registered itself (times in Unix seconds)."""

    id: str  # its lease owner id: host/pid/random
    host: str
    pid: int
    queues: dict[str, int]  # each queue it runs, with its concurrency
    started_at: float
    heartbeat_at: float
    lease_ttl: float  # a heartbeat older than this: the worker is lost
    version: str
