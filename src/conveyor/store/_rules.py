"""The decisions every store makes the same way, whatever its SQL: what a job becomes
when its worker is gone or stops, when cancellation is asked, and whether it can be
rerun. Each follows the one transition table (conveyor._states)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from .._models import Job
from .._states import TERMINAL, TRANSITIONS, JobStatus, Owner, is_allowed, sources
from ._records import ACTED_ON, NewJob, Transition

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


_NOT_RUNNING: Final = frozenset(JobStatus) - {S.RUNNING}


class StatusRange(NamedTuple):
    """One index's share of a set of statuses (see status_ranges)."""

    where: str  # the condition on jobs, spelled so that the index serves it
    leased: bool  # the running jobs, of jobs_leased


def status_ranges(statuses: frozenset[JobStatus]) -> list[StatusRange]:
    """``status IN statuses`` as the conditions, one per index, whose union it is (none
    for no status). The status indexes leave running jobs out (the schemas' migrations
    9): a claim gives each running job a lease and every way out of running clears it,
    so running jobs are read through jobs_leased, the rest through jobs_by_status or
    jobs_by_queue_status, with those indexes' own condition spelled out in the query:
    SQLite's planner takes a partial index only for a query that states its condition
    (it infers nothing from a test of the status for another value). And SQLite, without
    statistics, must be told to take jobs_leased (a query's ``leased`` ranges get
    ``INDEXED BY jobs_leased`` there); PostgreSQL's planner knows how few rows it holds."""
    ranges = []
    if rest := statuses - {S.RUNNING}:
        listed = "" if rest == _NOT_RUNNING else f"status IN {sql_in(rest)} AND "
        ranges.append(StatusRange(f"{listed}status <> {SQL.RUNNING}", False))
    if S.RUNNING in statuses:
        ranges.append(StatusRange(f"status = {SQL.RUNNING} AND lease_token IS NOT NULL", True))
    return ranges


def status_range(status: JobStatus) -> StatusRange:
    """The one range of a single status (see status_ranges)."""
    (found,) = status_ranges(frozenset([status]))
    return found


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
