"""The PostgreSQL store: many worker processes, on many machines, share one database.

Workers claim with ``FOR UPDATE SKIP LOCKED``, so concurrent claims never wait on each
other nor take the same job. Every write that changes a job's status appends history in
the same transaction and NOTIFYs the schema's channel, which every other runtime LISTENs
on: they hear new jobs and cancellations at once. History seqs come from a one-row
counter taken as the transaction's last step, so they become visible in commit order
and a runtime tailing the history never skips one (see _schema.py).

PostgresStore composes the parts of the Store protocol over one PostgresDB (_db.py: the
pools, the listener, errors): its reads (_reads.py), its writes (_writes.py, with
_history.py) and how it hears of other runtimes' commits (_commits.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._commits import PostgresCommits
from ._db import PostgresDB
from ._reads import PostgresReads
from ._writes import PostgresWrites


def split_schema(url: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL without its ``schema=`` query parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore:
    """Jobs in a PostgreSQL database (asyncpg), in tables of their own ``schema``.

    ``dsn`` is a ``postgresql://`` URL; a ``schema=NAME`` query parameter in it sets
    ``schema`` (default ``conveyor``), so one database can hold several independent
    sets of queues. ``lock_timeout`` is how long a write waits for a row or lock another
    connection holds before failing with :class:`StoreBusy`; ``command_timeout`` bounds
    any one call. Each runtime opens up to ``pool_size`` connections per pool (two
    pools), plus one that listens.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lock_timeout: float = 5.0,
        command_timeout: float = 30.0,
        pool_size: int = 4,
    ) -> None:
        dsn, in_url = split_schema(dsn)
        self.db = PostgresDB(
            dsn,
            schema=schema or in_url or "conveyor",
            lock_timeout=lock_timeout,
            command_timeout=command_timeout,
            pool_size=pool_size,
        )
        self.reads = PostgresReads(self.db)
        self.writes = PostgresWrites(self.db)
        self.commits = PostgresCommits(self.db)

    async def open(self, origin: str) -> None:
        self.reads.origin = self.writes.origin = self.commits.origin = origin
        await self.db.open(self.commits.notified)

    async def close(self) -> None:
        await self.db.close()
