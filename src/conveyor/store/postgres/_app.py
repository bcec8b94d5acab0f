"""The application's own connection, for what happens inside its transaction: a job
enqueued with ``connection=`` exists if and when the application commits, and no worker
sees it before (see PostgresWrites.jobs_insert)."""

from __future__ import annotations

from typing import cast

import asyncpg
import asyncpg.pool

from ..._errors import ValidationError
from ._db import Connection


def in_transaction(connection: object) -> Connection:
    """The application's asyncpg connection, checked: it must be inside a transaction,
    or the jobs would be committed at once, alone, which is what enqueue without
    ``connection=`` is for."""
    if not isinstance(connection, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)):
        raise ValidationError(
            "connection must be an asyncpg connection (from SQLAlchemy: (await"
            f" (await session.connection()).get_raw_connection()).driver_connection), not"
            f" {type(connection).__name__}"
        )
    if not connection.is_in_transaction():
        raise ValidationError(
            "connection is not in a transaction: enqueue with connection= inside"
            " `async with conn.transaction():`"
        )
    return cast(Connection, connection)
