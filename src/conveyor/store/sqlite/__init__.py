"""The embedded default store: one SQLite file, through aiosqlite (see _store.py), and
its parts, for composing a store of one's own."""

from ._commits import SQLiteCommits as SQLiteCommits
from ._reads import SQLiteReads as SQLiteReads
from ._store import SQLiteStore as SQLiteStore
from ._writes import SQLiteWrites as SQLiteWrites

__all__ = ("SQLiteCommits", "SQLiteReads", "SQLiteStore", "SQLiteWrites")
