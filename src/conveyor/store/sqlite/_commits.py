"""How a runtime on a SQLite file hears of other processes' commits: it cannot be told
(SQLite has no notifications), so it asks. ``PRAGMA data_version`` changes whenever
another connection committed to the file; reading it costs no disk I/O."""

from __future__ import annotations

from collections.abc import Callable, Collection

from ._file import SQLiteFile


class SQLiteCommits:
    """The store's CommitWatch on SQLite: the engine polls ``changed()``."""

    numbers_writes_in_commit_order = True  # BEGIN IMMEDIATE, AUTOINCREMENT seqs

    def __init__(self, file: SQLiteFile) -> None:
        self.file = file
        self._data_version = -1

    def watch(self, wake: Callable[[], None], queued: Callable[[Collection[str]], None]) -> None:
        """Nothing to register: without notifications, ``changed()`` is all there is."""

    async def changed(self) -> bool:
        rows = list(await self.file.read("PRAGMA data_version"))
        version = int(rows[0][0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    def queues_changed(self) -> bool:
        """Always: a pause elsewhere cannot be told apart from any other commit."""
        return True
