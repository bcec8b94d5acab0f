"""How every PostgreSQL write appends history and notifies: the change, its history rows
and the NOTIFY in one statement (see change_statement), so a write is one round trip.

A history row's seq is its writing transaction's id and its place in the transaction:
``xid << ORDINAL_BITS | ordinal``. Nothing is shared between writers (no counter, no
lock); readers make the order safe instead, by reading only below the oldest transaction
still running (see the schema's docstring, migration 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..._states import BY_VALUE
from .._base import Transition

ORDINAL_BITS: Final = 20  # history rows one transaction may write: 2**20 - 1
MAX_ROWS: Final = (1 << ORDINAL_BITS) - 1
# The first seq no transaction still running can write, in this statement's snapshot:
# every row below it is committed (and visible) or was rolled back.
HORIZON: Final = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {ORDINAL_BITS})"


def change_statement(t: str, change: str, args: int, order_by: str, *, notify: bool) -> str:
    """The statement that makes ``change``, appends its history and notifies.

    ``change`` is a data-modifying statement taking ``args`` parameters whose RETURNING
    has, per changed job, its history row as ``h_job_id, h_queue, h_status, h_at,
    h_message``; the rows take seqs in ``order_by`` order (columns of that RETURNING).
    The statement takes one more parameter, the writer's origin, and with ``notify`` a
    second, the channel it NOTIFYs; it returns the RETURNING rows, each with its
    ``h_seq``.

    The ordinals go on from the last one the transaction took (an application's
    transaction may enqueue many times: see ``connection=``), up to MAX_ROWS rows in a
    transaction. Nothing changed: no notification.
    """
    origin, channel = f"${args + 1}", f"${args + 2}"
    return (
        f"WITH changed AS ({change}),"
        f" mine AS (SELECT pg_current_xact_id()::text::bigint << {ORDINAL_BITS} AS low),"
        # The transaction's earlier rows (a range of the primary key: one index probe).
        " taken AS (SELECT coalesce(max(h.seq), mine.low) AS last FROM mine"
        f"   LEFT JOIN {t}job_history AS h ON h.seq > mine.low AND h.seq <= mine.low + {MAX_ROWS}"
        "   GROUP BY mine.low),"
        " numbered AS (SELECT changed.*, (SELECT last FROM taken)"
        f"   + row_number() OVER (ORDER BY {order_by}) AS h_seq FROM changed),"
        f" ins AS (INSERT INTO {t}job_history"
        "   (seq, job_id, queue, status, at, message, origin)"
        f"   SELECT h_seq, h_job_id, h_queue, h_status, h_at, h_message, {origin}::text"
        "   FROM numbered)"
        + (
            f", note AS (SELECT pg_notify({channel}::text, {origin}::text)"
            "   WHERE EXISTS (SELECT 1 FROM changed))"
            " SELECT numbered.*, (SELECT count(*) FROM note) AS h_notified FROM numbered"
            if notify
            else " SELECT numbered.* FROM numbered"
        )
    )


def transitions(rows: Sequence[Any]) -> list[Transition]:
    """The transitions of a change statement's rows, in seq order."""
    found = [
        Transition(
            seq=row["h_seq"],
            job_id=row["h_job_id"],
            queue=row["h_queue"],
            status=BY_VALUE[row["h_status"]],
            at=row["h_at"],
            message=row["h_message"],
        )
        for row in rows
    ]
    found.sort(key=lambda t: t.seq)
    return found
