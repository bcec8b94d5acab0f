"""Which store a location names: a ``postgresql://`` URL, or a SQLite file path."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import StoreUnavailable
from .._urls import is_postgres_url
from ._base import Store
from .sqlite import SQLiteStore


def store_at(location: str | os.PathLike[str]) -> Store:
    """The store at ``location``. PostgreSQL needs the ``postgres`` extra (asyncpg),
    imported only here so that SQLite users never load it."""
    if not is_postgres_url(location):
        return SQLiteStore(Path(location))
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(
            f"a PostgreSQL store needs asyncpg ({exc}): pip install 'conveyor[postgres]'"
        ) from exc
    return PostgresStore(str(location))
