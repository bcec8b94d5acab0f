"""The PostgreSQL store's reads (how it hears of commits is _commits.py)."""

from __future__ import annotations

from typing import Any

from ... import _codec
from ..._errors import JobNotFound, StoreBusy
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
from ._bulk import match_where
from ._db import Connection, PostgresDB
from ._history import HORIZON


class PostgresReads:
    """The reads of PostgresStore (PostgresStore adds the writes). ``self.t`` is the
    schema-qualified table prefix, e.g. ``conveyor.``."""

    def __init__(self, db: PostgresDB) -> None:
        self.db = db
        self.t = f"{db.schema}."
        self.origin = ""  # this process's mark on the history rows it writes (set at open)
        # Whether the last history_after saw rows it may not read yet: then the tail must
        # look again soon (PostgresCommits.changed says so), as they become readable
        # when an older transaction ends, with no notification of their own.
        self.held_back = False

    async def next_due(self) -> float | None:
        rows = await self.db.fetch(
            f"SELECT min(scheduled_at) FROM {self.t}jobs WHERE status = {SQL.DUE}"
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def lease_owners(self) -> set[str]:
        rows = await self.db.fetch(
            f"SELECT DISTINCT lease_owner FROM {self.t}jobs WHERE lease_token IS NOT NULL"
        )
        return {row[0] for row in rows}

    async def job_get(self, job_id: str) -> Job | None:
        rows = await self.db.fetch(f"SELECT {JOB_COLUMNS} FROM {self.t}jobs WHERE id = $1", job_id)
        return row_to_job(rows[0]) if rows else None

    async def jobs_list(self, params: ListParams) -> list[Job]:
        where: list[str] = []
        args: list[Any] = []
        if params.status is not None:
            where.append(status_range(params.status).where)
        for test, value in (
            ("queue = ", params.queue),
            ("created_by = ", params.created_by),
            ("id < ", params.before),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{test}${len(args)}")
        # Containment, the operators a GIN index serves, but no such index is made
        # (migration 7): a job's every transition changes its status, an indexed column,
        # so none of its updates is HOT and each would add the job's tags and pairs to a
        # GIN index anew, taxing the hot path for a filter that serves an operator's
        # look. The tests run on each row as the list walks an index newest first, and
        # stop at the page's limit. A fleet that filters often can add
        # ``CREATE INDEX ON jobs USING gin (tags)`` (or meta): the queries use it as is.
        if params.tags:
            args.append(params.tags)
            where.append(f"tags @> ${len(args)}::text[]")
        if params.meta:
            args.append(_codec.encode(params.meta).decode())
            where.append(f"meta @> ${len(args)}::jsonb")
        limit = f"${len(args) + 1}"
        page = f"ORDER BY id DESC LIMIT {limit}"
        if params.queue is not None and params.status is None:
            # One queue's newest, a status at a time, each the head of a range of
            # jobs_by_queue_status (running jobs: of jobs_leased), merged (the index a
            # queue alone had: migration 4).
            heads = " UNION ALL ".join(
                f"(SELECT {JOB_COLUMNS} FROM {self.t}jobs"
                f" WHERE {' AND '.join([*where, status_range(status).where])} {page})"
                for status in JobStatus
            )
            query = f"SELECT * FROM ({heads}) AS heads {page}"
        else:
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            query = f"SELECT {JOB_COLUMNS} FROM {self.t}jobs{clause} {page}"
        return rows_to_jobs(await self.db.fetch(query, *args, params.limit))

    async def jobs_count(self, match: JobMatch) -> int:
        where, args = match_where(match, frozenset(JobStatus), 1)
        rows = await self.db.fetch(f"SELECT count(*) FROM {self.t}jobs WHERE {where}", *args)
        return int(rows[0][0])

    async def jobs_finished_per_minute(self, since: float) -> list[FinishedCount]:
        # A range of jobs_finished per status (finished_at >= $1 implies its IS NOT NULL).
        rows = await self.db.fetch(
            f"SELECT floor(finished_at / 60)::bigint, queue, status, count(*) FROM {self.t}jobs"
            f" WHERE finished_at >= $1 AND status IN {SQL.THROUGHPUT} GROUP BY 1, 2, 3",
            since,
        )
        return [
            FinishedCount(minute=int(m), queue=q, status=BY_VALUE[s], count=int(n))
            for m, q, s, n in rows
        ]

    async def job_history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self.db.fetch(
            f"SELECT {HISTORY_COLUMNS} FROM {self.t}job_history WHERE job_id = $1 ORDER BY seq",
            job_id,
        )
        return [row_to_history_entry(row) for row in rows]

    async def history_after(
        self, seq: int, limit: int, *, everything: bool
    ) -> tuple[list[Transition], int]:
        # One statement, so one snapshot: the horizon and the rows agree. Below the
        # horizon every transaction has ended (see the schema, migration 3), so no row
        # below it can still appear later.
        # ``held``: committed rows wait above the horizon for an older transaction to
        # end, which no notification will announce (see held_back). Asked of the last
        # row (one probe of the primary key's end): an EXISTS with the horizon in its
        # condition is planned as a scan of the whole history, every tail read.
        others = "" if everything else f" AND h.origin <> $3 AND h.status IN {SQL.ACTED_ON}"
        rows = await self.db.fetch(
            f"SELECT top.last, top.held, {TRANSITION_COLUMNS} FROM (SELECT {HORIZON} - 1 AS last,"
            f"   coalesce((SELECT max(seq) FROM {self.t}job_history) >= {HORIZON}, false)"
            "   AS held) AS top"
            f" LEFT JOIN {self.t}job_history AS h"
            f"  ON h.seq > $1 AND h.seq <= top.last{others}"
            f" LEFT JOIN {self.t}jobs AS jobs ON jobs.id = h.job_id ORDER BY h.seq LIMIT $2",
            *((seq, limit) if everything else (seq, limit, self.origin)),
        )
        self.held_back = bool(rows[0][1]) if rows else False
        return tail_page([(row[0], *row[2:]) for row in rows], seq, limit)

    async def history_page(
        self, after: int, limit: int, *, queue: str | None, job_id: str | None
    ) -> list[Transition]:
        args: list[Any] = [after]
        where = ["h.seq > $1", f"h.seq < {HORIZON}"]  # see history_after
        for test, value in (("h.queue = ", queue), ("h.job_id = ", job_id)):
            if value is not None:
                args.append(value)
                where.append(f"{test}${len(args)}")
        rows = await self.db.fetch(
            f"SELECT {TRANSITION_COLUMNS} FROM {self.t}job_history AS h"
            f" LEFT JOIN {self.t}jobs AS jobs ON jobs.id = h.job_id"
            f" WHERE {' AND '.join(where)} ORDER BY h.seq LIMIT ${len(args) + 1}",
            *args,
            limit,
        )
        return [row_to_transition(row) for row in rows]

    async def jobs_running_progress(self, other_than: str) -> list[RunningProgress]:
        sql = RUNNING_PROGRESS.format(t=self.t, owner="$1", leased="")
        return [row_to_running_progress(row) for row in await self.db.fetch(sql, other_than)]

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        counts: dict[str, dict[JobStatus, int]] = {}
        for queue, status, n in await self.db.fetch(QUEUE_COUNTS.format(t=self.t, leased="")):
            counts.setdefault(queue, {})[BY_VALUE[status]] = n
        return counts

    async def last_seq(self) -> int:
        # Where a tail starting now begins: below the horizon, every row is history.
        rows = await self.db.fetch(
            f"SELECT greatest({HORIZON} - 1, (SELECT max(seq) FROM {self.t}job_history"
            f" WHERE seq < {HORIZON}))"
        )
        return int(rows[0][0])


# -- reads inside a write transaction (on its connection) -----------------------------


async def job_row(
    conn: Connection, t: str, job_id: str, queue: str | None, *, lock: bool = True
) -> Job:
    """The job (locked FOR UPDATE unless ``lock=False``); JobNotFound unless it is of
    ``queue``. ``t`` is the schema-qualified table prefix."""
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM {t}jobs WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        job_id,
    )
    if row is None or (queue is not None and row[1] != queue):
        raise JobNotFound(job_id)
    return row_to_job(row)


async def unfinished_with_key(conn: Connection, db: PostgresDB, queue: str, key: str) -> Job:
    """The unfinished job of ``queue`` that holds ``key`` (an insert just found one)."""
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM {db.schema}.jobs WHERE queue = $1 AND unique_key = $2"
        f" AND status IN {SQL.UNFINISHED}",
        queue,
        key,
    )
    if row is None:  # the job that held the key ended between the two statements
        raise StoreBusy(
            f"{db.where}: the unfinished job with unique_key {key!r} of queue"
            f" {queue!r} ended while this enqueue waited for it; nothing was changed,"
            " enqueue again"
        )
    return row_to_job(row)
