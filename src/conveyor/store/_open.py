"""Which store a location names: a ``postgresql://`` URL, or a SQLite file path."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import StoreUnavailable
from .._urls import is_postgres_url
from ._base import Store
from .sqlite import SQLiteStore


def store_at(location: str | os.PathLike[str], *, create: bool = True) -> Store:
    """The store at ``location``. PostgreSQL needs the ``postgres`` extra (asyncpg),
    imported only here so that SQLite users never load it. ``create=False``: only a
    database that exists (StoreUnavailable otherwise), for tools that read and operate."""
    if not is_postgres_url(location):
        if not create and not Path(location).is_file():
            raise StoreUnavailable(f"no database at {location}")
        return SQLiteStore(Path(location))
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(
            f"a PostgreSQL store needs asyncpg ({exc}): pip install 'conveyor[postgres]'"
        ) from exc
    return PostgresStore(str(location), create=create)
