"""Rows to records: the column lists both stores select, and their mapping to Job and
Transition (the stores keep the same columns, with times as Unix seconds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .. import _codec
from .._clock import maybe_datetime, to_datetime
from .._models import NO_PROGRESS, HistoryEntry, Job
from .._states import BY_VALUE
from ._base import RunningProgress, Transition

JOB_COLUMNS: Final = (
    "id, queue, status, payload, result, error, traceback, progress, attempts, max_attempts,"
    " priority, created_by, created_at, scheduled_at, started_at, finished_at, updated_at,"
    " timeout"
)


def row_to_job(row: Any) -> Job:
    return Job(
        id=row[0],
        queue=row[1],
        status=BY_VALUE[row[2]],
        payload=_codec.decode(row[3]),
        result=None if row[4] is None else _codec.decode(row[4]),
        error=row[5],
        traceback=row[6],
        progress=NO_PROGRESS if row[7] is None else _codec.decode_progress(row[7]),
        attempts=row[8],
        max_attempts=row[9],
        priority=row[10],
        created_by=row[11],
        created_at=to_datetime(row[12]),
        scheduled_at=maybe_datetime(row[13]),
        started_at=maybe_datetime(row[14]),
        finished_at=maybe_datetime(row[15]),
        updated_at=to_datetime(row[16]),
        timeout=row[17],
    )


TRANSITION_COLUMNS: Final = (
    "h.seq, h.job_id, h.queue, h.status, h.at, h.message, h.origin, jobs.progress"
)


def row_to_transition(row: Any) -> Transition:
    """A row of TRANSITION_COLUMNS (history joined with its job) as a Transition."""
    seq, job_id, queue, status, at, message, origin, progress = row
    return Transition(
        seq=seq,
        job_id=job_id,
        queue=queue,
        status=BY_VALUE[status],
        at=at,
        message=message,
        origin=origin,
        progress=None if progress is None else _codec.decode_progress(progress),
    )


HISTORY_COLUMNS: Final = "seq, job_id, status, at, message"


def row_to_history_entry(row: Any) -> HistoryEntry:
    seq, job_id, status, at, message = row
    return HistoryEntry(
        seq=seq, job_id=job_id, status=BY_VALUE[status], at=to_datetime(at), message=message
    )


def tail_page(rows: Sequence[Any], seq: int, limit: int) -> tuple[list[Transition], int]:
    """history_after's answer from its rows, each the snapshot's newest seq followed by
    TRANSITION_COLUMNS (NULLs when no row is new): the transitions, and where the next
    call starts — after the last row returned when the page was full, else at the newest
    seq (past the rows the query skipped)."""
    transitions = [row_to_transition(row[1:]) for row in rows if row[1] is not None]
    if len(transitions) == limit:
        return transitions, transitions[-1].seq
    return transitions, max(seq, int(rows[0][0])) if rows else seq


RUNNING_PROGRESS: Final = (
    "SELECT id, queue, (SELECT max(seq) FROM {t}job_history AS h WHERE h.job_id = jobs.id),"
    " progress FROM {t}jobs AS jobs WHERE status = 'running' AND lease_owner <> {owner}"
)
"""The query of jobs_running_progress: ``{t}`` the table prefix, ``{owner}`` a parameter."""


def row_to_running_progress(row: Any) -> RunningProgress:
    job_id, queue, seq, progress = row
    return RunningProgress(
        job_id, queue, seq or 0, None if progress is None else _codec.decode_progress(progress)
    )
