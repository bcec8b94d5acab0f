"""How every PostgreSQL write appends history and notifies: the change, its history rows
and the NOTIFY in one statement (see change_statement), so a write is one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._states import BY_VALUE
from .._base import Transition


def change_statement(t: str, change: str, args: int, order_by: str) -> str:
    """The statement that makes ``change``, appends its history and notifies.

    ``change`` is a data-modifying statement taking ``args`` parameters whose RETURNING
    has, per changed job, its history row as ``h_job_id, h_queue, h_status, h_at,
    h_message``; the rows take seqs in ``order_by`` order (columns of that RETURNING).
    The statement takes two more parameters, the writer's origin and the channel, and
    returns the RETURNING rows, each with its ``h_seq``.

    Taking the seqs locks the counter row until the transaction ends, so seqs become
    visible in commit order (see the schema); it happens after the change, so keep it a
    transaction's last write. Nothing changed: no seq taken, no notification.
    """
    origin, channel = f"${args + 1}", f"${args + 2}"
    return (
        f"WITH changed AS ({change}),"
        f" s AS (UPDATE {t}history_seq SET last = last + (SELECT count(*) FROM changed)"
        "   WHERE EXISTS (SELECT 1 FROM changed) RETURNING last),"
        " numbered AS (SELECT changed.*, (SELECT last FROM s) - count(*) OVER ()"
        f"   + row_number() OVER (ORDER BY {order_by}) AS h_seq FROM changed),"
        f" ins AS (INSERT INTO {t}job_history"
        "   (seq, job_id, queue, status, at, message, origin)"
        f"   SELECT h_seq, h_job_id, h_queue, h_status, h_at, h_message, {origin}::text"
        "   FROM numbered),"
        f" note AS (SELECT pg_notify({channel}::text, {origin}::text) FROM s)"
        " SELECT numbered.*, (SELECT count(*) FROM note) AS h_notified FROM numbered"
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
