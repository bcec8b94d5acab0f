"""The PostgreSQL store, for worker processes on many machines (see _store.py). Needs
asyncpg (the ``postgres`` extra): import it only when a PostgreSQL store is used."""

from ._store import PostgresStore as PostgresStore
from ._store import split_schema as split_schema

__all__ = ("PostgresStore", "split_schema")
