"""The connections to one PostgreSQL database, through asyncpg.

Two pools and one listening connection. Like the SQLite store's two writers, one pool
commits durably (enqueues, outcomes, cancellations) and one with
``synchronous_commit = off`` for writes whose loss is harmless: claims, lease renewals,
progress. A lost claim only means the job runs again, which at-least-once allows, and
the server's next durable commit flushes the write-ahead log with it. Reads use the
durable pool. The listening connection LISTENs on the schema's channel: every history
write NOTIFYs it, so other runtimes hear commits (new jobs, cancellations) at once
instead of polling.

asyncpg and server errors leave here as StoreErrors. The one case where "nothing was
changed" cannot be promised is a connection lost while a write was committing (a COMMIT,
or a single-statement write, in flight): the server may have committed. The error says so.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias, TypeVar

import anyio
import asyncpg
import asyncpg.pool

from ..._errors import StoreBusy, StoreError, StoreUnavailable, ValidationError
from ..._urls import without_password
from .._base import counted
from ._schema import MIGRATIONS

T = TypeVar("T")
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_BUSY_STATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available: lock_timeout ran out
        "57014",  # query_canceled: statement_timeout ran out
    }
)
_UNAVAILABLE_CLASSES: Final = ("08", "53", "57P", "3D", "28")  # connection, resources,
# shutdown, no such database, authentication
_READ_ONLY: Final = "25006"
LINK_ERRORS: Final = (asyncpg.InterfaceError, OSError, TimeoutError)  # the connection
# asyncpg refused to send on a connection the server has closed, in the moment before
# the client sees the socket close: nothing was sent, so trying again is safe.
NOT_SENT: Final = asyncpg.exceptions.InternalClientError
_CONFLICTS: Final = ("40001", "40P01")  # serialization failure, deadlock: rolled back
_CUT: Final = ("57P", "08")  # the server shuts down or drops the connection
_RETRIES: Final = 3  # attempts in all, when trying again is safe (see _attempts)
NOTIFY_CHECK: Final = 2.0  # seconds a notification may take to reach the listener at open
POOLER_ADVICE: Final = "give listen_url= a direct connection to the database (docs/postgres.md)"
# What a transaction pooler's refusals say: a session setting it does not forward, or a
# prepared statement that stayed on another server connection.
_POOLER_SIGNS: Final = re.compile(
    r"unsupported startup parameter|prepared statement .* does not exist", re.IGNORECASE
)
LISTENER_ANSWER: Final = 1.0  # seconds a listener check may take before it counts as lost
# Seconds a new connection may take: short, so that while the server is out of reach
# attempts keep coming (each a fresh SYN) rather than one waiting out SYN backoff.
CONNECT_TIMEOUT: Final = 5.0


DEAD_PEER_SECONDS: Final = 10  # a connection whose far end is gone fails within this
IDLE_IN_TRANSACTION: Final = 10  # seconds the server keeps a transaction whose client went
# silent in the middle of it, before it ends it (see PostgresDB._settings)
# The server's side of the same: probe a silent client after 5 s, give up after 3 misses.
SERVER_KEEPALIVES: Final = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


async def _detect_dead_peers(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    detect_dead_peers(conn)


def detect_dead_peers(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """TCP keepalives and a user timeout on the connection's socket, so that one whose
    far end went away (a partition, a server that dropped it) fails within seconds
    instead of sitting in retransmission backoff for minutes: an idle one is probed
    after 5 s of silence, and unacknowledged data gives up after DEAD_PEER_SECONDS.
    asyncpg has no public call for its socket; without one (a Unix socket, a newer
    asyncpg) the connection keeps the system's defaults."""
    transport = getattr(conn, "_transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", DEAD_PEER_SECONDS * 1000),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


async def _renew_idle(pool: Pool) -> None:
    """After one connection was cut, replace the pool's others on their next use: the
    server (restarted, failed over, or terminating backends) has most likely cut them
    all, and retrying on one dead connection after another would use up the retries."""
    await pool.expire_connections()


def _describe(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__


class PostgresDB:
    """The pools of one database and schema, the schema's migrations, and the only ways
    in: a ``write()`` transaction, a ``statement()`` that is its own transaction,
    ``fetch()`` for reads, and ``on_notify`` (given to ``open()``) for commits."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        lock_timeout: float,
        command_timeout: float,
        pool_size: int,
        listen_dsn: str | None = None,
        create: bool = True,
        handler_pool_size: int = 10,
    ) -> None:
        if not SCHEMA_NAME.fullmatch(schema):
            raise ValidationError(
                f"schema must be a lower-case SQL name (letters, digits, _), not {schema!r}"
            )
        self.dsn = dsn
        self.create = create  # False: open only a schema that exists (read-only tools)
        # A separate listening address means dsn is a transaction pooler (see
        # PostgresStore): pooled connections then keep no session state.
        self.pooled = listen_dsn is not None
        self.listen_dsn = listen_dsn or dsn
        self.schema = schema
        self.channel = f"conveyor_{schema}"
        self.lock_timeout = lock_timeout
        self.command_timeout = command_timeout
        self.pool_size = pool_size
        self.handler_pool_size = handler_pool_size
        self._pool: Pool | None = None
        self._fast_pool: Pool | None = None
        self._handler_pool: Pool | None = None  # made on first use (handler_pool)
        self._handler_pool_opening = anyio.Lock()
        self.errors: dict[str, int] = {}  # what error() made, by kind (see Store.errors)

    @property
    def where(self) -> str:
        """The database, for messages, without the password."""
        return f"{without_password(self.dsn)} (schema {self.schema})"

    def error(self, exc: BaseException, *, committing: bool = False) -> StoreError:
        return counted(self.errors, self._error(exc, committing=committing))

    def _error(self, exc: BaseException, *, committing: bool) -> StoreError:
        state = getattr(exc, "sqlstate", None) or ""
        text = f"{self.where}: {_describe(exc)}"
        if not self.pooled and _POOLER_SIGNS.search(_describe(exc)):
            text += f" (a transaction pooler such as PgBouncer? Then {POOLER_ADVICE})"
        if state in _BUSY_STATES:
            return StoreBusy(f"{text}; nothing was changed")
        if state == _READ_ONLY or state.startswith(_UNAVAILABLE_CLASSES):
            return StoreUnavailable(f"{text}; nothing was changed")
        if isinstance(exc, asyncpg.PostgresError):
            return StoreError(f"{text}; nothing was changed")
        # The connection itself failed (refused, reset, closed, timed out).
        if committing:
            return StoreUnavailable(
                f"{text}; the connection was lost while committing, so the change may or"
                " may not have been stored",
                outcome_unknown=True,
            )
        return StoreUnavailable(f"{text}; nothing was changed")

    async def _setup(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        detect_dead_peers(conn)
        # JSON columns travel as the bytes msgspec reads and writes: no str round trip.
        await conn.set_type_codec(
            "json",
            encoder=bytes,
            decoder=bytes,
            schema="pg_catalog",
            format="binary",
        )

    async def _reset(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """Nothing to reset between uses: the store leaves no session state on pooled
        connections (no session locks, cursors, LISTENs or SETs; write() always ends its
        transaction), so asyncpg's default reset would only cost a round trip per use."""

    def _settings(self, durable: bool) -> dict[str, str]:
        """What a pool's transactions run with: the lock timeout; the commit mode; and a
        bound on a transaction left open by a client that vanished (a partition in the
        middle of a write): readers of the history wait for every transaction older
        than the rows they read (see the schema), so the server must not keep one
        open for the hours its own TCP timeouts would take to notice."""
        settings = {
            "lock_timeout": str(int(self.lock_timeout * 1000)),
            "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION * 1000),
        }
        if not durable:
            settings["synchronous_commit"] = "off"
        return settings

    def local_settings(self, durable: bool) -> str:
        """The same, for one transaction (behind a pooler, sessions are not ours)."""
        return "; ".join(f"SET LOCAL {k} = '{v}'" for k, v in self._settings(durable).items())

    async def _create_pool(self, *, durable: bool, for_handlers: bool = False) -> Pool:
        # Behind a pooler, sessions are not ours: settings go per transaction instead,
        # and the pooler keeps its own connections alive.
        settings = {} if self.pooled else {**self._settings(durable), **SERVER_KEEPALIVES}
        # Handlers' connections are plain asyncpg ones (no JSON codec), opened as needed
        # and put back with asyncpg's own reset, as a handler may leave session state.
        extra: dict[str, Any] = (
            {"min_size": 0, "max_size": self.handler_pool_size, "init": _detect_dead_peers}
            if for_handlers
            else {
                "min_size": 1,
                "max_size": self.pool_size,
                "init": self._setup,
                "reset": self._reset,
            }
        )
        name = "conveyor handler" if for_handlers else "conveyor"
        return await asyncpg.create_pool(
            self.dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=self.command_timeout,
            statement_cache_size=0 if self.pooled else 100,
            server_settings={"application_name": name, **settings},
            **extra,
        )

    async def handler_pool(self) -> Pool:
        """The pool of the transactions handlers write in (conveyor.transaction()), of
        its own so that handlers holding transactions never starve the store's writes;
        opened on first use, as most runtimes never need it."""
        async with self._handler_pool_opening:
            if self._handler_pool is None:
                if self._pool is None:
                    raise StoreError("store is not open")
                try:
                    with anyio.fail_after(self.command_timeout):
                        self._handler_pool = await self._create_pool(
                            durable=True, for_handlers=True
                        )
                except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
                    raise self.error(exc) from exc
            return self._handler_pool

    async def connect(self) -> None:
        """Open the two pools (what a pooler may refuse); nothing is created yet."""
        try:
            with anyio.fail_after(self.command_timeout):
                self._pool = await self._create_pool(durable=True)
                self._fast_pool = await self._create_pool(durable=False)
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            await self.close()
            raise self.error(exc) from exc
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> None:
        """Create or migrate the schema (``create=False``: only one that exists)."""
        try:
            with anyio.fail_after(self.command_timeout):
                await self._migrate()
        except (asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS) as exc:
            raise self.error(exc) from exc

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for pool in (self._handler_pool, self._fast_pool, self._pool):
                if pool is not None:
                    with anyio.move_on_after(self.command_timeout):
                        await pool.close()
                    pool.terminate()
        self._pool = self._fast_pool = self._handler_pool = None

    async def _migrate(self) -> None:
        async def migrate(conn: Connection) -> None:
            s = self.schema
            # Several processes may start at once: one migrates, the others wait for it.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"conveyor.{s}")
            if (
                not self.create
                and await conn.fetchval("SELECT to_regclass($1)", f"{s}.version") is None
            ):
                raise StoreUnavailable(
                    f"{self.where}: no conveyor tables in schema {s}; nothing was created"
                )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.version (number integer)")
            version = await conn.fetchval(f"SELECT max(number) FROM {s}.version") or 0
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"{self.where}: schema version {version} is newer than this conveyor"
                    f" understands ({len(MIGRATIONS)}); upgrade conveyor"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script.format(schema=s))
                await conn.execute(f"INSERT INTO {s}.version (number) VALUES ($1)", number)

        await self.write(migrate)

    async def write(self, body: Callable[[Connection], Awaitable[T]], *, durable: bool = True) -> T:
        """Run ``body`` as one transaction on a pooled connection: BEGIN, body, COMMIT
        (ROLLBACK if it raises). ``durable=False`` commits without waiting for the log
        flush (see the module docstring). Retried as _attempts says."""

        async def transaction(conn: Connection, sent: _Sent) -> T:
            transaction = conn.transaction()
            await transaction.start()
            sent.begun = True
            if self.pooled:
                await conn.execute(self.local_settings(durable))
            try:
                result = await body(conn)
            except BaseException:
                # A rollback failing (the connection is gone) must not hide the error
                # that caused it; the server rolls back anyway.
                with contextlib.suppress(asyncpg.PostgresError, NOT_SENT, *LINK_ERRORS):
                    await transaction.rollback()
                raise
            sent.committing = True
            await transaction.commit()
            return result

        return await self._attempts(self._pool if durable else self._fast_pool, transaction)

    async def statement(self, sql: str, *args: Any, durable: bool = True) -> Sequence[Any]:
        """One statement as its own transaction (no BEGIN and COMMIT round trips), its
        rows. A connection lost while it ran leaves the outcome unknown, and the
        StoreUnavailable says so."""

        async def alone(conn: Connection, sent: _Sent) -> Sequence[Any]:
            sent.begun = sent.committing = True
            return list(await conn.fetch(sql, *args))

        if self.pooled:  # its settings need a transaction (see local_settings)

            async def body(conn: Connection) -> Sequence[Any]:
                return list(await conn.fetch(sql, *args))

            return await self.write(body, durable=durable)
        return await self._attempts(self._pool if durable else self._fast_pool, alone)

    async def fetch(self, sql: str, *args: Any) -> Sequence[Any]:
        """A read: whatever cut it short, it is safe to repeat."""

        async def read(conn: Connection, sent: _Sent) -> Sequence[Any]:
            return list(await conn.fetch(sql, *args))

        return await self._attempts(self._pool, read)

    async def _attempts(
        self, pool: Pool | None, attempt: Callable[[Connection, _Sent], Awaitable[T]]
    ) -> T:
        """Run ``attempt`` on a pooled connection, again (up to three times in all) when
        that cannot have changed anything twice: a deadlock or serialization failure
        (rolled back), any error the server reported because it is shutting down or
        dropping the connection (the transaction died with it), a send asyncpg refused,
        and a connection lost before the attempt began (``sent`` tells how far it got).

        Shielded from cancellation: once sent, a write is seen to its end before the
        caller sees a cancellation (``command_timeout`` bounds the wait).
        """
        if pool is None:
            raise StoreError("store is not open")
        with anyio.CancelScope(shield=True):
            for number in range(1, _RETRIES + 1):
                sent = _Sent()
                last = number == _RETRIES
                try:
                    async with pool.acquire() as conn:
                        try:
                            return await attempt(conn, sent)
                        except NOT_SENT:
                            conn.terminate()  # not back into the pool as it is
                            raise
                except asyncpg.PostgresError as exc:
                    state = exc.sqlstate or ""
                    if state.startswith(_CUT):
                        await _renew_idle(pool)
                    if not last and (state in _CONFLICTS or state.startswith(_CUT)):
                        continue
                    raise self.error(exc) from exc
                except NOT_SENT as exc:
                    await _renew_idle(pool)
                    if not last:
                        continue
                    raise self.error(exc) from exc
                except LINK_ERRORS as exc:
                    await _renew_idle(pool)
                    if not last and not sent.begun:
                        continue
                    raise self.error(exc, committing=sent.committing) from exc
        raise AssertionError("unreachable")


class _Sent:
    """How far one attempt got, so a failure can tell what it may have changed."""

    __slots__ = ("begun", "committing")

    def __init__(self) -> None:
        self.begun = False  # something that writes reached the server
        self.committing = False  # ... and may have committed
