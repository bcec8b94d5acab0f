"""User mistakes, and the checks that catch them before anything starts."""

from __future__ import annotations

import anyio

from ..store import is_postgres_url


class UsageError(Exception):
    """A mistake in how the command was called: printed as one line, exit code 2."""


DATABASE_HELP = "a database: a SQLite file (e.g. conveyor.db) or a postgresql:// URL"


async def require_database(db: str) -> None:
    """Refuse a file that does not exist rather than create an empty database there. A
    PostgreSQL URL is tried when opened: a server that does not answer is a StoreError."""
    if not is_postgres_url(db) and not await anyio.Path(db).is_file():
        raise UsageError(f"no database at {db}")
