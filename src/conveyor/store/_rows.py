"""Rows to records: the column lists both stores select, and their mapping to Job and
Transition (the stores keep the same columns, with times as Unix seconds).

A row that cannot be read whole (a hand edit, a bug of an older version) is reported for
that row and never breaks a read of others: a JSON column that does not decode comes
back as its raw text (progress as a note in its message; meta as the value of the key
``conveyor.unreadable``, tags as that one tag), and is logged; a row whose
status or times are unreadable is left out of lists (logged) and is a StoreError when
asked for by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from .. import _codec
from .._clock import maybe_datetime, to_datetime
from .._errors import StoreError
from .._logging import get_logger
from .._models import NO_PROGRESS, HistoryEntry, Job, Progress
from .._states import BY_VALUE, JobStatus
from ._records import RunningProgress, Transition
from ._rules import status_range, status_ranges

log = get_logger("conveyor.store")

_UNREADABLE: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, TypeError)


class UnreadableRow(StoreError):
    """A stored row that cannot be read back as a record."""


def _raw_text(data: Any) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode("utf-8", "replace")
    return str(data)


def _json(job_id: str, column: str, data: Any) -> Any:
    try:
        return _codec.decode(data)
    except _UNREADABLE as exc:
        log.warning(
            "job %s: its stored %s is not valid JSON (%s); shown as text", job_id, column, exc
        )
        return _raw_text(data)


def _progress(job_id: str, data: Any) -> Progress:
    if data is None:
        return NO_PROGRESS
    try:
        return _codec.decode_progress(data)
    except _UNREADABLE as exc:
        log.warning("job %s: its stored progress cannot be read (%s)", job_id, exc)
        return Progress(message=f"(stored progress unreadable: {_raw_text(data)[:200]})")


UNREADABLE_LABEL: Final = "conveyor.unreadable"


def read_meta(job_id: str, data: Any) -> dict[str, str]:
    """A meta column: NULL (no meta; every job stored before migration 7), JSON text."""
    if data is None:
        return {}
    try:
        return _codec.decode_meta(data)
    except _UNREADABLE as exc:
        log.warning("job %s: its stored meta cannot be read (%s)", job_id, exc)
        return {UNREADABLE_LABEL: _raw_text(data)[:200]}


def read_tags(job_id: str, data: Any) -> list[str]:
    """A tags column: NULL (no tags), a list (PostgreSQL's text[]), JSON text (SQLite)."""
    if data is None:
        return []
    if isinstance(data, list) and all(isinstance(tag, str) for tag in data):
        return data
    try:
        return _codec.decode_tags(data)
    except _UNREADABLE as exc:
        log.warning("job %s: its stored tags cannot be read (%s)", job_id, exc)
        return [UNREADABLE_LABEL]


JOB_COLUMNS: Final = (
    "id, queue, status, payload, result, error, traceback, progress, attempts, max_attempts,"
    " priority, created_by, created_at, scheduled_at, started_at, finished_at, updated_at,"
    " timeout, meta, tags"
)


def row_to_job(row: Any) -> Job:
    """The Job of a row of JOB_COLUMNS; UnreadableRow if its status or times are broken."""
    try:
        return _row_to_job(row)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        raise UnreadableRow(f"the stored row of job {row[0]!r} cannot be read: {exc!r}") from None


def rows_to_jobs(rows: Iterable[Any]) -> list[Job]:
    """The Jobs of rows, leaving out (and logging) any that cannot be read."""
    jobs: list[Job] = []
    for row in rows:
        try:
            jobs.append(row_to_job(row))
        except UnreadableRow as exc:
            log.error("%s; left out of the list", exc)
    return jobs


def _row_to_job(row: Any) -> Job:
    job_id = row[0]
    return Job(
        id=job_id,
        queue=row[1],
        status=BY_VALUE[row[2]],
        payload=_json(job_id, "payload", row[3]),
        result=None if row[4] is None else _json(job_id, "result", row[4]),
        error=row[5],
        traceback=row[6],
        progress=_progress(job_id, row[7]),
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
        meta=read_meta(job_id, row[18]),
        tags=read_tags(job_id, row[19]),
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
        progress=None if progress is None else _progress(job_id, progress),
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


_RUNNING: Final = status_range(JobStatus.RUNNING)
RUNNING_PROGRESS: Final = (
    "SELECT id, queue, (SELECT max(seq) FROM {t}job_history AS h WHERE h.job_id = jobs.id),"
    " progress FROM {t}jobs AS jobs {leased}"
    f" WHERE {_RUNNING.where} AND lease_owner <> {{owner}}"
)
"""The query of jobs_running_progress: ``{t}`` the table prefix, ``{owner}`` a parameter,
``{leased}`` the store's hint for a leased range (see status_ranges)."""

QUEUE_COUNTS: Final = " UNION ALL ".join(
    f"SELECT queue, status, count(*) FROM {{t}}jobs {'{leased}' if r.leased else ''}"
    f" WHERE {r.where} GROUP BY queue, status"
    for r in status_ranges(frozenset(JobStatus))
)
"""The query of queue_counts, a count per index (see status_ranges): ``{t}`` the table
prefix, ``{leased}`` the store's hint for a leased range."""


def row_to_running_progress(row: Any) -> RunningProgress:
    job_id, queue, seq, progress = row
    return RunningProgress(
        job_id, queue, seq or 0, None if progress is None else _progress(job_id, progress)
    )
