"""The PostgreSQL schema, as an ordered list of migrations applied inside the store's
own schema (``{schema}`` below); ``{schema}.version`` holds the number applied. Append
new migrations; never edit a shipped one.

The same shape as the SQLite schema (sqlite/_schema.py), so rows map to records the
same way: times are Unix seconds, payloads and results JSON.

History seqs (migration 3). Every runtime of a fleet tails one ordered stream of
history rows and resumes from a seq with no gap and no duplicate, so a row must never
become visible below a seq a reader has already passed. Migration 1 promised that with a
one-row counter each transaction updated as its last step: seqs became visible in commit
order because every write of the fleet queued for that row's lock, one commit at a time,
so adding worker processes added contention rather than throughput, and a transaction
the application held open (an enqueue inside it) would have stalled every writer.

Since migration 3, writers share nothing. A row's seq is ``xid << 20 | ordinal``: its
transaction's id (``pg_current_xact_id()``) and its place among the transaction's
history rows (each write goes on from the transaction's last, see _history.py).
Transaction ids are handed out in the order transactions first write, not the order
they commit, so a reader reads only
below the horizon ``pg_snapshot_xmin(pg_current_snapshot()) << 20``: every transaction
below the oldest one still running has ended, so every row below the horizon that will
ever exist is visible in the reader's snapshot, and nothing can appear there later. The
price is on the reader's side: a row becomes readable once every transaction that began
writing before its own has ended, so a write transaction held open anywhere on the
server (another application's included) delays events, never writers. Per-job order
holds because a job's next transition locks its row, which the previous transition's
transaction held until it committed, so the later one has the larger id. 20 bits of
ordinal leave 43 for ids: trillions of transactions; a transaction may write up to
2**20 - 1 rows. Alternatives weighed: a sequence alone (values visible out of order: a
reader would skip), and a single sequencer process numbering committed rows (gapless,
without the reader's wait, but every history row written twice and a leader to elect).
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: jobs, their history, and the counter that hands out history seqs.
    """
    CREATE TABLE {schema}.jobs (
        id               text COLLATE "C" PRIMARY KEY,  -- ids sort as bytes, as in Python
        queue            text NOT NULL,
        status           text NOT NULL,
        payload          json NOT NULL,
        result           json,
        error            text,
        traceback        text,
        progress         json,                 -- Progress; NULL before any report
        attempts         bigint NOT NULL DEFAULT 0,
        max_attempts     bigint NOT NULL DEFAULT 1,
        priority         integer NOT NULL DEFAULT 0,
        created_by       text,
        created_at       double precision NOT NULL,  -- Unix seconds
        scheduled_at     double precision,
        started_at       double precision,
        finished_at      double precision,
        updated_at       double precision NOT NULL,
        timeout          double precision,
        unique_key       text,
        lease_owner      text,
        lease_token      text,                 -- set while a worker runs it; fences its writes
        lease_expires_at double precision,
        orphanings       integer NOT NULL DEFAULT 0
    );
    -- Claiming reads the head of this partial index, skipping rows other workers lock.
    CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority DESC, id) WHERE status = 'queued';
    CREATE INDEX jobs_leased ON {schema}.jobs (lease_expires_at) WHERE lease_token IS NOT NULL;
    CREATE INDEX jobs_leased_by ON {schema}.jobs (lease_owner) WHERE lease_token IS NOT NULL;
    CREATE INDEX jobs_due ON {schema}.jobs (scheduled_at) WHERE status = 'scheduled';
    CREATE INDEX jobs_by_queue ON {schema}.jobs (queue, id);
    CREATE INDEX jobs_by_status ON {schema}.jobs (status, id);
    CREATE INDEX jobs_by_queue_status ON {schema}.jobs (queue, status, id);
    CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
    -- At most one unfinished job per (queue, unique_key).
    CREATE UNIQUE INDEX jobs_unique ON {schema}.jobs (queue, unique_key)
        WHERE unique_key IS NOT NULL
        AND status IN ('scheduled', 'queued', 'running', 'cancelling');

    CREATE TABLE {schema}.job_history (
        seq     bigint PRIMARY KEY,             -- from history_seq: commit order, no gaps
        job_id  text COLLATE "C" NOT NULL,
        queue   text NOT NULL,
        status  text NOT NULL,
        at      double precision NOT NULL,
        message text,
        origin  text NOT NULL                   -- the runtime that wrote it
    );
    CREATE INDEX job_history_by_job ON {schema}.job_history (job_id, seq);

    -- One row. A transaction takes its seqs from it as its last step, holding the row
    -- lock until it commits, so seqs become visible in order: a reader that has seen
    -- seq n has seen every seq below it (a sequence would not promise that).
    CREATE TABLE {schema}.history_seq (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        last     bigint NOT NULL
    );
    INSERT INTO {schema}.history_seq (last) VALUES (0);
    """,
    # 2: periodic queues remember when their schedule first ran here (see SQLite's 4).
    """
    CREATE TABLE {schema}.periodic (
        queue      text PRIMARY KEY,
        first_seen double precision NOT NULL  -- Unix seconds
    );
    """,
    # 3: seqs from each row's transaction id, read below the horizon (see above); the
    # rows written before keep theirs, which are all below any new one: checked here,
    # since a transaction id only grows.
    """
    DO $check$ BEGIN
        IF (SELECT coalesce(max(seq), 0) FROM {schema}.job_history)
            >= (pg_current_xact_id()::text::bigint << 20) THEN
            RAISE EXCEPTION 'conveyor: history seqs would not grow; report this';
        END IF;
    END $check$;
    DROP TABLE {schema}.history_seq;
    """,
    # 4: fewer index entries per job. A job's every transition changes its status, so
    # none of its updates can be HOT: each one adds an entry to every index whose
    # predicate holds. The leases' two indexes become one (both are small, holding only
    # the running jobs), and listing one queue's jobs reads jobs_by_queue_status a
    # status at a time (see PostgresReads.jobs_list) instead of an index of its own:
    # 22 index entries per job from enqueue to completion become 18.
    """
    DROP INDEX {schema}.jobs_by_queue;
    DROP INDEX {schema}.jobs_leased;
    DROP INDEX {schema}.jobs_leased_by;
    CREATE INDEX jobs_leased ON {schema}.jobs (lease_owner, lease_expires_at)
        WHERE lease_token IS NOT NULL;
    """,
    # 5: paused queues, for every runtime of the fleet (a row while paused).
    """
    CREATE TABLE {schema}.paused_queues (
        queue     text PRIMARY KEY,
        paused_at double precision NOT NULL,  -- Unix seconds
        paused_by text
    );
    """,
    # 6: the runtimes running workers, each heartbeating (the workers view).
    """
    CREATE TABLE {schema}.workers (
        id           text PRIMARY KEY,         -- its lease owner id
        record       json NOT NULL,            -- the rest (WorkerRecord)
        heartbeat_at double precision NOT NULL -- Unix seconds
    );
    """,
    # 7: job metadata, given at enqueue and never changed after; NULL when a job has
    # none (as every job stored before has). jsonb and text[], so the list filters are
    # containment (meta @> '{"k": "v"}', tags @> '{t}'), the operators a GIN index
    # serves; no such index is made here (why: PostgresReads.jobs_list). Adding
    # nullable columns without a default rewrites nothing: instant on any table.
    """
    ALTER TABLE {schema}.jobs ADD COLUMN meta jsonb, ADD COLUMN tags text[];
    """,
    # 8: retention looks old finished jobs up by status and age (see SQLite's 8): one
    # index range per status, the jobs it deletes and no others, whatever the planner's
    # statistics say of the table. Built in the migration's transaction, which holds
    # writes to jobs meanwhile (a few seconds per million jobs, once).
    """
    DROP INDEX {schema}.jobs_finished;
    CREATE INDEX jobs_finished ON {schema}.jobs (status, finished_at)
        WHERE finished_at IS NOT NULL;
    """,
    # 9: the status indexes leave running jobs out (see SQLite's 9). No update of a job
    # is HOT (each changes its status), so each added an entry to both for the row
    # version it wrote; a claim's version, running, now adds none: 18 index entries per
    # job from enqueue to completion become 16. Running jobs are read through
    # jobs_leased (store/_rules.py, status_ranges). Built like 8's, once.
    """
    DROP INDEX {schema}.jobs_by_status;
    DROP INDEX {schema}.jobs_by_queue_status;
    CREATE INDEX jobs_by_status ON {schema}.jobs (status, id) WHERE status <> 'running';
    CREATE INDEX jobs_by_queue_status ON {schema}.jobs (queue, status, id)
        WHERE status <> 'running';
    """,
)
