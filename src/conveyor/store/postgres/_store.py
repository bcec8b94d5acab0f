"""The PostgreSQL store: many worker processes, on many machines, share one database.

Workers claim with ``FOR UPDATE SKIP LOCKED``, so concurrent claims never wait on each
other nor take the same job. Every write that changes a job's status appends history in
the same transaction and NOTIFYs the schema's channel, which every other runtime LISTENs
on: they hear new jobs and cancellations at once. No row or lock is shared by every
write: a history seq is the writing transaction's id and the row's place in it, and
readers read only below the oldest transaction still running, so a runtime tailing the
history never skips a row nor sees one twice (see _schema.py, migration 3).

PostgresStore composes the parts of the Store protocol over one PostgresDB (_db.py: the
pools, the listener, errors): its reads (_reads.py), its writes (_writes.py, with
_leases.py, _bulk.py and _history.py) and how it hears of other runtimes' commits (_commits.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ... import _limits
from ..._errors import ValidationError
from ..._urls import is_postgres_url
from ._commits import PostgresCommits
from ._db import PostgresDB
from ._queues import PostgresQueues, PostgresWorkers
from ._reads import PostgresReads
from ._writes import PostgresWrites

MAX_POOL = 1000  # connections per pool: past the number any server lets one client have


def split_option(url: str, name: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL without its ``name=`` query parameter (one of conveyor's,
    which the server would refuse), and that parameter's value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    value = next((v for k, v in query if k == name), None)
    rest = urlencode([(k, v) for k, v in query if k != name])
    return urlunsplit(parts._replace(query=rest)), value


def split_schema(url: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL without its ``schema=`` query parameter, and that schema."""
    return split_option(url, "schema")


class PostgresStore:
    """Jobs in a PostgreSQL database (asyncpg), in tables of their own ``schema``.

    ``dsn`` is a ``postgresql://`` URL; a ``schema=NAME`` query parameter in it sets
    ``schema`` (default ``conveyor``), so one database can hold several independent
    sets of queues. ``lock_timeout`` is how long a write waits for a row or lock another
    connection holds before failing with :class:`StoreBusy`; ``command_timeout`` bounds
    any one call. Each runtime opens up to ``pool_size`` connections per pool (two
    pools), plus one that listens, plus, once a handler opens ``conveyor.transaction()``,
    up to ``handler_pool_size`` for handlers' transactions (a handler waits for one
    while that many are open). ``create=False`` opens only a schema that exists
    (StoreUnavailable otherwise), as the read-and-operate commands of the CLI do.

    Behind a transaction pooler (PgBouncer with ``pool_mode = transaction``), ``dsn``
    names the pooler and ``listen_url`` (or a ``listen_url=`` query parameter, URL-encoded)
    a direct connection to the same database: notifications cannot cross a transaction
    pooler, so the one listening connection goes around it. With ``listen_url`` the
    pooled connections keep no session state: no prepared statement cache (a pooler
    before PgBouncer 1.21 cannot carry one), and the lock timeout and commit mode are set
    in each transaction (``SET LOCAL``), so every write is a transaction of its own,
    one round trip more than without a pooler. Opening checks that a notification sent
    through ``dsn`` reaches the listener, and says what to change when it does not.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lock_timeout: float = 5.0,
        command_timeout: float = 30.0,
        pool_size: int = 4,
        listen_url: str | None = None,
        create: bool = True,
        handler_pool_size: int = 10,
    ) -> None:
        lock_timeout = _limits.bounded_seconds("lock_timeout", lock_timeout)
        command_timeout = _limits.bounded_seconds("command_timeout", command_timeout)
        pool_size = _limits.integer("pool_size", pool_size, 1, MAX_POOL)
        handler_pool_size = _limits.integer("handler_pool_size", handler_pool_size, 1, MAX_POOL)
        dsn, in_url = split_schema(dsn)
        dsn, listen_in_url = split_option(dsn, "listen_url")
        listen = listen_url if listen_url is not None else listen_in_url
        if listen is not None and not is_postgres_url(listen):
            raise ValidationError(f"listen_url must be a postgresql:// URL, not {listen!r}")
        self.db = PostgresDB(
            dsn,
            schema=schema or in_url or "conveyor",
            lock_timeout=lock_timeout,
            command_timeout=command_timeout,
            pool_size=pool_size,
            listen_dsn=listen,
            create=create,
            handler_pool_size=handler_pool_size,
        )
        self.reads = PostgresReads(self.db)
        self.writes = PostgresWrites(self.db)
        self.commits = PostgresCommits(self.db, self.reads)
        self.queues = PostgresQueues(self.db)
        self.workers = PostgresWorkers(self.db)
        self.errors = self.db.errors  # see Store.errors

    async def open(self, origin: str) -> None:
        """Connect, listen, then create or migrate the schema: everything that can
        refuse (a pooler, the listener) comes before anything is created, so a refusal
        leaves the database as it was."""
        self.reads.origin = self.writes.origin = self.commits.origin = origin
        try:
            await self.db.connect()
            self.writes.history.start()
            await self.commits.open()
            await self.db.migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.writes.history.stop()
        self.commits.close()
        await self.db.close()
