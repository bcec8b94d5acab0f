"""The SQLite store's reads: on the file's reader connection, so they never wait
behind a write."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..._errors import JobNotFound
from ..._models import HistoryEntry, Job
from ..._states import BY_VALUE, JobStatus
from .._records import FinishedCount, JobMatch, ListParams, RunningProgress, Transition
from .._rows import (
    HISTORY_COLUMNS,
    JOB_COLUMNS,
    QUEUE_COUNTS,
    RUNNING_PROGRESS,
    TRANSITION_COLUMNS,
    row_to_history_entry,
    row_to_job,
    row_to_running_progress,
    row_to_transition,
    rows_to_jobs,
    tail_page,
)
from .._rules import SQL, status_range
from ._bulk import matching
from ._file import SQLiteFile
from ._sql import LEASED, jobs_table


class SQLiteReads:
    """The StoreReads of SQLiteStore, on the reader connection."""

    def __init__(self, file: SQLiteFile) -> None:
        self.file = file
        self.origin = ""  # this process's mark on the history rows it writes (set at open)

    async def next_due(self) -> float | None:
        rows = list(
            await self.file.read(f"SELECT min(scheduled_at) FROM jobs WHERE status = {SQL.DUE}")
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def lease_owners(self) -> set[str]:
        rows = await self.file.read(
            "SELECT DISTINCT lease_owner FROM jobs WHERE lease_token IS NOT NULL"
        )
        return {row[0] for row in rows}

    async def job_get(self, job_id: str) -> Job | None:
        rows = list(await self.file.read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)))
        return row_to_job(rows[0]) if rows else None

    async def jobs_list(self, params: ListParams) -> list[Job]:
        where: list[str] = []
        args: list[Any] = []
        if params.queue is not None:
            where.append("queue = ?")
            args.append(params.queue)
        table = "jobs"
        if params.status is not None:
            statuses = status_range(params.status)
            where.append(statuses.where)
            table = jobs_table(statuses)
        if params.created_by is not None:
            where.append("created_by = ?")
            args.append(params.created_by)
        if params.before is not None:
            where.append("id < ?")
            args.append(params.before)
        # Tags and meta are not indexed: their tests run on each row as the list walks
        # the jobs newest first (the primary key, jobs_by_queue, or the status indexes)
        # and stop at the page's limit, cheap when matches are common, a scan of the
        # rest when rare. An index would need a table of its own, a row per tag or pair:
        # one more write for every tagged job on the enqueue path and on every purge,
        # for a filter that serves an operator's look.
        for tag in params.tags:
            where.append("EXISTS (SELECT 1 FROM json_each(jobs.tags) AS t WHERE t.value = ?)")
            args.append(tag)
        for key, value in params.meta.items():
            where.append("json_extract(meta, ?) = ?")  # keys hold no '"' (_limits.label)
            args += (f'$."{key}"', value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.file.read(
            f"SELECT {JOB_COLUMNS} FROM {table}{clause} ORDER BY id DESC LIMIT ?",
            [*args, params.limit],
        )
        return rows_to_jobs(rows)

    async def jobs_count(self, match: JobMatch) -> int:
        counts = matching(match, frozenset(JobStatus), "count(*)")
        if not counts:
            return 0
        total = " + ".join(f"({query})" for query, _ in counts)
        rows = list(await self.file.read(f"SELECT {total}", [p for _, ps in counts for p in ps]))
        return int(rows[0][0])

    async def jobs_finished_per_minute(self, since: float) -> list[FinishedCount]:
        # A range of jobs_finished per status (finished_at >= ? implies its IS NOT
        # NULL), not every ended job through jobs_by_status.
        rows = await self.file.read(
            "SELECT CAST(finished_at / 60 AS INTEGER), queue, status, count(*) FROM jobs"
            f" WHERE finished_at >= ? AND status IN {SQL.THROUGHPUT} GROUP BY 1, 2, 3",
            (since,),
        )
        return [
            FinishedCount(minute=int(m), queue=q, status=BY_VALUE[s], count=int(n))
            for m, q, s, n in rows
        ]

    async def job_history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self.file.read(
            f"SELECT {HISTORY_COLUMNS} FROM job_history WHERE job_id = ? ORDER BY seq",
            (job_id,),
        )
        return [row_to_history_entry(row) for row in rows]

    async def history_after(
        self, seq: int, limit: int, *, everything: bool
    ) -> tuple[list[Transition], int]:
        # One statement, so one snapshot: the high-water mark and the rows agree, and the
        # next call scans only rows written since.
        others = "" if everything else f" AND h.origin != ? AND h.status IN {SQL.ACTED_ON}"
        rows = list(
            await self.file.read(
                f"SELECT top.m, {TRANSITION_COLUMNS}"
                " FROM (SELECT coalesce(max(seq), 0) AS m FROM job_history) AS top"
                " LEFT JOIN job_history AS h ON h.seq > ? AND h.seq <= top.m"
                f"{others} LEFT JOIN jobs ON jobs.id = h.job_id ORDER BY h.seq LIMIT ?",
                (seq, limit) if everything else (seq, self.origin, limit),
            )
        )
        return tail_page(rows, seq, limit)

    async def history_page(
        self, after: int, limit: int, *, queue: str | None, job_id: str | None
    ) -> list[Transition]:
        where: list[str] = ["h.seq > ?"]
        args: list[Any] = [after]
        if queue is not None:
            where.append("h.queue = ?")
            args.append(queue)
        if job_id is not None:
            where.append("h.job_id = ?")
            args.append(job_id)
        rows = await self.file.read(
            f"SELECT {TRANSITION_COLUMNS} FROM job_history AS h"
            " LEFT JOIN jobs ON jobs.id = h.job_id"
            f" WHERE {' AND '.join(where)} ORDER BY h.seq LIMIT ?",
            [*args, limit],
        )
        return [row_to_transition(row) for row in rows]

    async def jobs_running_progress(self, other_than: str) -> list[RunningProgress]:
        rows = await self.file.read(
            RUNNING_PROGRESS.format(t="", owner="?", leased=LEASED), (other_than,)
        )
        return [row_to_running_progress(row) for row in rows]

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, status, n in await self.file.read(QUEUE_COUNTS.format(t="", leased=LEASED)):
            counts.setdefault(queue, {})[BY_VALUE[status]] = n
        return counts

    async def last_seq(self) -> int:
        rows = list(await self.file.read("SELECT coalesce(max(seq), 0) FROM job_history"))
        return int(rows[0][0])


# -- reads inside a write transaction (on the writer's connection) ---------------------


def job_row(conn: sqlite3.Connection, job_id: str, queue: str | None) -> Job:
    """The job, as the transaction sees it; JobNotFound unless it is of ``queue``."""
    rows = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchall()
    if not rows or (queue is not None and rows[0][1] != queue):
        raise JobNotFound(job_id)
    return row_to_job(rows[0])


def unfinished_with_key(conn: sqlite3.Connection, queue: str, key: str) -> Job:
    """The unfinished job of ``queue`` that holds ``key`` (an insert just found one)."""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND unique_key = ?"
        f" AND status IN {SQL.UNFINISHED}",
        (queue, key),
    ).fetchall()
    return row_to_job(rows[0])
