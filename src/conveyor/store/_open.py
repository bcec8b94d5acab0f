"""Which store a location names: a ``postgresql://`` URL, or a SQLite file path."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._errors import StoreUnavailable
from ._base import Store
from ._sqlite import SQLiteStore

URL_SCHEMES = ("postgresql://", "postgres://")


def without_password(location: str | os.PathLike[str]) -> str:
    """The location as it may be printed: a URL's password masked out."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1@", str(location))


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def store_at(location: str | os.PathLike[str]) -> Store:
    """The store at ``location``. PostgreSQL needs the ``postgres`` extra (asyncpg),
    imported only here so that SQLite users never load it."""
    if not is_postgres_url(location):
        return SQLiteStore(Path(location))
    try:
        from ._postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(
            f"a PostgreSQL store needs asyncpg ({exc}): pip install 'conveyor[postgres]'"
        ) from exc
    return PostgresStore(str(location))
