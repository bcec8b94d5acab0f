"""The embedded default store: one SQLite file, through aiosqlite (see _store.py)."""

from ._store import SQLiteStore as SQLiteStore

__all__ = ("SQLiteStore",)
