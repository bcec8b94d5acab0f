"""Job states and the one table of allowed transitions.

Every state change in conveyor is one row of :data:`TRANSITIONS`, each naming the
component that owns it. Stores derive their ``WHERE status IN (...)`` guards from this
table (see :func:`sources`), so a transition that is not listed here cannot happen.
"""

from __future__ import annotations

import enum
from typing import Final


class JobStatus(enum.StrEnum):
    """The life cycle of a job. Values are the strings used on the wire and in the store."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


BY_VALUE: Final = {status.value: status for status in JobStatus}
"""Status by its string: a dict lookup, much cheaper than calling the enum on a hot path."""

TERMINAL: Final = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
"""States a job leaves only through an explicit rerun."""

ACTIVE: Final = frozenset({JobStatus.RUNNING, JobStatus.CANCELLING})
"""States in which a worker holds the job's lease."""


class Owner(enum.StrEnum):
    """Who performs a transition."""

    USER = "user"  # enqueue, request_job_cancel, rerun
    SCHEDULER = "scheduler"  # claiming a job for a worker
    EXECUTOR = "executor"  # the outcome of running a handler
    MAINTENANCE = "maintenance"  # promotion of scheduled jobs, rescue of expired leases


S = JobStatus
TRANSITIONS: Final[frozenset[tuple[JobStatus | None, JobStatus, Owner]]] = frozenset(
    {
        (None, S.QUEUED, Owner.USER),
        (None, S.SCHEDULED, Owner.USER),
        (S.SCHEDULED, S.QUEUED, Owner.MAINTENANCE),
        (S.SCHEDULED, S.CANCELLED, Owner.USER),
        (S.QUEUED, S.RUNNING, Owner.SCHEDULER),
        (S.QUEUED, S.CANCELLED, Owner.USER),
        (S.RUNNING, S.CANCELLING, Owner.USER),
        (S.RUNNING, S.COMPLETED, Owner.EXECUTOR),
        (S.RUNNING, S.FAILED, Owner.EXECUTOR),
        (S.RUNNING, S.CANCELLED, Owner.EXECUTOR),
        (S.RUNNING, S.SCHEDULED, Owner.EXECUTOR),  # a retry waiting for its backoff
        (S.RUNNING, S.QUEUED, Owner.EXECUTOR),  # put back by a worker shutting down
        (S.RUNNING, S.QUEUED, Owner.MAINTENANCE),  # lease expired: the worker was lost
        (S.RUNNING, S.FAILED, Owner.MAINTENANCE),  # lost too many times
        # A handler may finish before it notices a cancellation request.
        (S.CANCELLING, S.COMPLETED, Owner.EXECUTOR),
        (S.CANCELLING, S.FAILED, Owner.EXECUTOR),
        (S.CANCELLING, S.CANCELLED, Owner.EXECUTOR),
        (S.CANCELLING, S.CANCELLED, Owner.MAINTENANCE),  # its worker was lost
        (S.COMPLETED, S.QUEUED, Owner.USER),  # rerun
        (S.FAILED, S.QUEUED, Owner.USER),  # rerun
        (S.CANCELLED, S.QUEUED, Owner.USER),  # rerun
    }
)
del S


def sources(target: JobStatus, owner: Owner) -> frozenset[JobStatus]:
    """The states from which ``owner`` may move a job to ``target``."""
    return frozenset(
        src for src, dst, who in TRANSITIONS if dst is target and who is owner and src is not None
    )


def is_allowed(source: JobStatus | None, target: JobStatus, owner: Owner) -> bool:
    return (source, target, owner) in TRANSITIONS
