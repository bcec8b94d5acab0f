"""The decisions every store makes the same way, whatever its SQL: what a job becomes
when its worker is gone or stops, when cancellation is asked, and whether it can be
rerun. Each follows the one transition table (conveyor._states)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from .._models import Job
from .._states import TERMINAL, TRANSITIONS, JobStatus, Owner, is_allowed, sources
from ._base import ACTED_ON, NewJob, Transition

S = JobStatus

RERUN_FROM: Final = frozenset(sources(S.QUEUED, Owner.USER))
CANCEL_AT_ONCE: Final = frozenset(sources(S.CANCELLED, Owner.USER))
CANCEL_BY_REQUEST: Final = frozenset(sources(S.CANCELLING, Owner.USER))


def _only(statuses: frozenset[JobStatus]) -> JobStatus:
    (status,) = statuses
    return status


CLAIMABLE: Final = _only(sources(S.RUNNING, Owner.SCHEDULER))  # what a claim takes
DUE: Final = _only(sources(S.QUEUED, Owner.MAINTENANCE) - {S.RUNNING})  # what promotion takes
# Outcomes a run may end in, but not one whose cancellation is pending: those end
# cancelled instead (a put back or a retry while cancelling).
OVERRIDDEN_BY_CANCEL: Final = frozenset(
    dst
    for src, dst, who in TRANSITIONS
    if src is S.RUNNING and who is Owner.EXECUTOR and not is_allowed(S.CANCELLING, dst, who)
)
assert is_allowed(S.CANCELLING, S.CANCELLED, Owner.EXECUTOR)
UNFINISHED: Final = frozenset(JobStatus) - TERMINAL
THROUGHPUT: Final = frozenset({S.COMPLETED, S.FAILED})  # the ends jobs_finished_per_minute counts


def sql(status: JobStatus) -> str:
    """A status as an SQL string literal (statuses are plain lower-case words)."""
    return f"'{status.value}'"


def sql_in(statuses: frozenset[JobStatus]) -> str:
    """Statuses as an SQL list, for ``status IN (...)``."""
    return "(" + ", ".join(sql(s) for s in sorted(statuses)) + ")"


class SQL:
    """The statuses the stores' SQL names, as SQL literals taken from the table above:
    no store types a status by hand."""

    SCHEDULED: Final = sql(S.SCHEDULED)
    QUEUED: Final = sql(S.QUEUED)
    RUNNING: Final = sql(S.RUNNING)
    CANCELLING: Final = sql(S.CANCELLING)
    CANCELLED: Final = sql(S.CANCELLED)
    CLAIMABLE: Final = sql(CLAIMABLE)
    DUE: Final = sql(DUE)
    OVERRIDDEN_BY_CANCEL: Final = sql_in(OVERRIDDEN_BY_CANCEL)
    UNFINISHED: Final = sql_in(UNFINISHED)  # jobs_unique's
    THROUGHPUT: Final = sql_in(THROUGHPUT)
    ACTED_ON: Final = sql_in(ACTED_ON)  # history_after's without everything


UNCLAIMED: Final = "the answer to its claim was lost"  # jobs_unclaim's reason


class PutBack(NamedTuple):
    status: JobStatus
    error: str | None
    message: str
    orphanings: int


def put_back(
    status: str, orphanings: int, max_orphanings: int | None, reason: str = "worker shut down"
) -> PutBack:
    """A leased job whose worker stopped (``max_orphanings`` None: it shut down, or
    ``reason`` says why else) or was lost (counted; failed once lost ``max_orphanings``
    times); cancelled instead where cancellation was pending. A job put back to queued
    also gets its attempt back (the stores' SQL does that): a run that never ended was no
    attempt, so a crash or a restart never uses up ``max_attempts``, and attempts never
    read "2 of 1"."""
    lost = orphanings + (max_orphanings is not None)
    if status == JobStatus.CANCELLING:
        return PutBack(JobStatus.CANCELLED, None, "cancelled: its worker stopped", lost)
    if max_orphanings is None:
        return PutBack(JobStatus.QUEUED, None, f"requeued: {reason}", lost)
    if lost >= max_orphanings:
        error = f"worker lost ({lost} times)"
        return PutBack(JobStatus.FAILED, error, f"failed: worker lost {lost} times", lost)
    message = f"requeued: worker lost (lease expired; {lost} of {max_orphanings})"
    return PutBack(JobStatus.QUEUED, None, message, lost)


def cancel_request(status: JobStatus) -> tuple[JobStatus, str] | None:
    """What a cancellation request makes of a job in ``status``: cancelled at once if it
    waits, cancelling if it runs; None if it is already ending or ended."""
    if status in CANCEL_AT_ONCE:
        return JobStatus.CANCELLED, CANCELLED_WAITING
    if status in CANCEL_BY_REQUEST:
        return JobStatus.CANCELLING, CANCEL_REQUESTED
    return None


CANCELLABLE: Final = CANCEL_AT_ONCE | CANCEL_BY_REQUEST
CANCELLED_WAITING: Final = "cancelled before it ran"
CANCEL_REQUESTED: Final = "cancellation requested"


def rerun_refusal(job_id: str, status: JobStatus) -> str | None:
    """Why a job in ``status`` cannot be rerun, or None if it can."""
    if status in RERUN_FROM:
        return None
    return f"job {job_id} is {status.value}; only {', '.join(sorted(RERUN_FROM))} jobs can be rerun"


def insert_outcomes(
    jobs: Sequence[NewJob], transitions: Sequence[Transition], kept_out_by: Mapping[str, Job]
) -> list[Transition | Job]:
    """What jobs_insert returns: per job, in order, its transition, or (``kept_out_by``,
    keyed by the skipped job's id) the job whose unique key or derived id it met."""
    inserted = {t.job_id: t for t in transitions}
    return [inserted[j.id] if j.id in inserted else kept_out_by[j.id] for j in jobs]
