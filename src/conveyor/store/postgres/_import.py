"""Moving up from SQLite: a SQLite queue database copied whole into a PostgreSQL schema
(jobs, their history with its seqs, periodic state, paused queues), in one transaction, so
the copy is all there or not at all.

History rows keep their SQLite seqs. Those are small numbers, below every seq PostgreSQL
hands out (a transaction id shifted left 20 bits: see _schema.py, migration 3), so a
client that saw seq N on SQLite resumes from N on PostgreSQL with no gap and no
duplicate, and the fleet's new rows follow."""

from __future__ import annotations

from typing import Any, Final

from ... import _codec
from ..._errors import ValidationError
from .._rows import read_meta, read_tags
from ..sqlite import SQLiteStore
from ._db import Connection
from ._history import ORDINAL_BITS
from ._store import PostgresStore

JOB_FIELDS: Final = (
    "id, queue, status, payload, result, error, traceback, progress, attempts,"
    " max_attempts, priority, created_by, created_at, scheduled_at, started_at,"
    " finished_at, updated_at, timeout, unique_key, lease_owner, lease_token,"
    " lease_expires_at, orphanings, meta, tags"
)
HISTORY_FIELDS: Final = "seq, job_id, queue, status, at, message, origin"
TABLES: Final = (  # (table, its fields, its key: the first field, which pages the copy)
    ("jobs", JOB_FIELDS, "id"),
    ("job_history", HISTORY_FIELDS, "seq"),
    ("periodic", "queue, first_seen", "queue"),
    ("paused_queues", "queue, paused_at, paused_by", "queue"),
)
BATCH: Final = 5000  # rows read from SQLite and sent by COPY at a time


def _job_record(row: Any) -> tuple[Any, ...]:
    """A SQLite jobs row as PostgreSQL's columns take it: meta (JSON text) read and
    written again, so that a row a hand edit broke is copied as the store reads it
    (see _rows) rather than failing the copy; tags from a JSON array to a list, for
    text[]. Both NULL when the job has none."""
    *rest, meta, tags = row
    job_id = row[0]
    checked_meta = read_meta(job_id, meta)
    checked_tags = read_tags(job_id, tags)
    return (
        *rest,
        _codec.encode(checked_meta).decode() if checked_meta else None,
        checked_tags or None,
    )


async def copy_from_sqlite(source: SQLiteStore, target: PostgresStore) -> dict[str, int]:
    """Copy every row of ``source`` into ``target`` (both open), which must hold no jobs;
    how many rows of each table."""
    db = target.db
    schema = db.schema

    async def copy(conn: Connection) -> dict[str, int]:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {schema}.jobs)"):
            raise ValidationError(
                f"{db.where} holds jobs already: migrate into an empty schema (?schema=NAME)"
            )
        last = list(await source.file.read("SELECT coalesce(max(seq), 0) FROM job_history"))
        low = await conn.fetchval(f"SELECT pg_current_xact_id()::text::bigint << {ORDINAL_BITS}")
        if last[0][0] >= low:  # cannot happen below 2**43 transactions: said, not assumed
            raise ValidationError("the SQLite history's seqs reach PostgreSQL's: report this")
        copied: dict[str, int] = {}
        for table, fields, key in TABLES:
            copied[table] = 0
            after: Any = None
            while True:
                rows = list(
                    await source.file.read(
                        f"SELECT {fields} FROM {table}"
                        + ("" if after is None else f" WHERE {key} > ?")
                        + f" ORDER BY {key} LIMIT {BATCH}",
                        () if after is None else (after,),
                    )
                )
                if not rows:
                    break
                await conn.copy_records_to_table(
                    table,
                    schema_name=schema,
                    columns=[f.strip() for f in fields.split(",")],
                    records=[_job_record(row) if table == "jobs" else tuple(row) for row in rows],
                )
                copied[table] += len(rows)
                after = rows[-1][0]  # each table's key is its first field
        return copied

    return await db.write(copy)
