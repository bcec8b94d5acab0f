"""The SQLite schema, as an ordered list of migrations; ``PRAGMA user_version`` is the
number applied. Append new migrations; never edit a shipped one."""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: jobs and their history.
    """
    CREATE TABLE jobs (
        id               TEXT PRIMARY KEY,
        queue            TEXT NOT NULL,
        status           TEXT NOT NULL,
        payload          BLOB NOT NULL,        -- JSON
        result           BLOB,                 -- JSON
        error            TEXT,
        traceback        TEXT,
        progress         BLOB,                 -- JSON Progress; NULL before any report
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL DEFAULT 1,
        priority         INTEGER NOT NULL DEFAULT 0,
        created_by       TEXT,
        created_at       REAL NOT NULL,        -- Unix seconds
        scheduled_at     REAL,
        started_at       REAL,
        finished_at      REAL,
        updated_at       REAL NOT NULL,
        lease_owner      TEXT,
        lease_token      TEXT,                 -- set while a worker runs it; fences its writes
        lease_expires_at REAL,
        orphanings       INTEGER NOT NULL DEFAULT 0
    );
    -- Claiming reads the head of this partial index: O(log n) however many jobs are stored.
    CREATE INDEX jobs_ready ON jobs (queue, priority DESC, id) WHERE status = 'queued';
    CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE lease_token IS NOT NULL;
    CREATE INDEX jobs_by_queue ON jobs (queue, id);
    CREATE INDEX jobs_by_status ON jobs (status, id);
    CREATE INDEX jobs_by_queue_status ON jobs (queue, status, id);

    CREATE TABLE job_history (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: clients resume from it
        job_id  TEXT NOT NULL,
        queue   TEXT NOT NULL,
        status  TEXT NOT NULL,
        at      REAL NOT NULL,
        message TEXT,
        origin  TEXT NOT NULL                       -- the runtime that wrote it
    );
    CREATE INDEX job_history_by_job ON job_history (job_id, seq);
    """,
    # 2: delayed jobs and retries wait as 'scheduled' until scheduled_at; per-job timeouts.
    """
    ALTER TABLE jobs ADD COLUMN timeout REAL;
    CREATE INDEX jobs_due ON jobs (scheduled_at) WHERE status = 'scheduled';
    """,
    # 3: unique jobs. At most one unfinished job per (queue, unique_key): a job leaves
    # this partial index when it ends, making room for the next one with its key.
    """
    ALTER TABLE jobs ADD COLUMN unique_key TEXT;
    CREATE UNIQUE INDEX jobs_unique ON jobs (queue, unique_key)
        WHERE unique_key IS NOT NULL
        AND status IN ('scheduled', 'queued', 'running', 'cancelling');
    -- Retention deletes old finished jobs by age.
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    """,
    # 4: periodic queues remember when their schedule first ran here, so that catching
    # up after downtime never enqueues ticks from before the queue existed.
    """
    CREATE TABLE periodic (
        queue      TEXT PRIMARY KEY,
        first_seen REAL NOT NULL              -- Unix seconds
    );
    """,
    # 5: paused queues, for every process of the file (a row while paused).
    """
    CREATE TABLE paused_queues (
        queue     TEXT PRIMARY KEY,
        paused_at REAL NOT NULL,              -- Unix seconds
        paused_by TEXT
    );
    """,
    # 6: the processes running workers on the file, each heartbeating (the workers view).
    """
    CREATE TABLE workers (
        id           TEXT PRIMARY KEY,        -- its lease owner id
        record       TEXT NOT NULL,           -- the rest, as JSON (WorkerRecord)
        heartbeat_at REAL NOT NULL            -- Unix seconds
    );
    """,
    # 7: job metadata, given at enqueue and never changed after. NULL when a job has
    # none (as every job stored before has): nothing written for jobs without. Neither
    # is indexed (why: SQLiteReads.jobs_list).
    """
    ALTER TABLE jobs ADD COLUMN meta TEXT;    -- JSON object, str -> str
    ALTER TABLE jobs ADD COLUMN tags TEXT;    -- JSON array of str, no repeats
    """,
    # 8: retention looks old finished jobs up by status and age, so jobs_finished is
    # (status, finished_at): each pass reads only the jobs it deletes. On finished_at
    # alone the planner searched jobs_by_status instead and read every job of the
    # status, holding the write lock (0.35 to 0.7 s per million completed jobs, at
    # every start and every retention interval; benchmarks/scale.py). Throughput's
    # read of the last minutes is one range per status in it. Building it on a big
    # table takes a moment, once (a few seconds per million jobs).
    """
    DROP INDEX jobs_finished;
    CREATE INDEX jobs_finished ON jobs (status, finished_at) WHERE finished_at IS NOT NULL;
    """,
    # 9: the status indexes leave running jobs out. Every job's claim and its end each
    # moved its entries in both, out of one status and into the next: ten of the hot
    # path's index writes per job, counting the insert's. Running jobs are few (one per
    # busy worker slot) and jobs_leased holds each of them already, so reads of running
    # jobs go through it (store/_rules.py, status_ranges): six writes per job remain,
    # and the writer thread's CPU per job in benchmarks/ `process` fell by about a
    # tenth. Built like 8's, once.
    """
    DROP INDEX jobs_by_status;
    DROP INDEX jobs_by_queue_status;
    CREATE INDEX jobs_by_status ON jobs (status, id) WHERE status <> 'running';
    CREATE INDEX jobs_by_queue_status ON jobs (queue, status, id) WHERE status <> 'running';
    """,
)
