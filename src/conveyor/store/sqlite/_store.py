"""The embedded default store: one SQLite file, through aiosqlite.

SQLiteStore composes the parts of the Store protocol over one SQLiteFile (_file.py: the
connections and transactions; read its docstring for why three connections): its reads
(_reads.py), its writes (_writes.py, with _leases.py and _bulk.py) and how it hears of
other processes' commits (_commits.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..._errors import ValidationError
from ._commits import SQLiteCommits
from ._file import SQLiteFile
from ._queues import SQLiteQueues, SQLiteWorkers
from ._reads import SQLiteReads
from ._writes import SQLiteWrites


class SQLiteStore:
    """Jobs in one SQLite file. Every process using the file must be on this machine.

    ``synchronous="NORMAL"`` trades durability of the last commits on power loss (not on
    a process crash) for speed; the default, ``"FULL"``, loses nothing acknowledged.
    ``busy_timeout`` is how long a write waits for another process's write lock before
    failing with :class:`StoreBusy`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValidationError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.file = SQLiteFile(Path(path), synchronous=synchronous, busy_timeout=busy_timeout)
        self.path = self.file.path
        self.synchronous = synchronous
        self.reads = SQLiteReads(self.file)
        self.writes = SQLiteWrites(self.file)
        self.commits = SQLiteCommits(self.file)
        self.queues = SQLiteQueues(self.file)
        self.workers = SQLiteWorkers(self.file)
        self.errors = self.file.errors  # see Store.errors

    async def open(self, origin: str) -> None:
        self.reads.origin = self.writes.origin = origin
        await self.file.open()

    async def close(self) -> None:
        await self.file.close()

    # -- writes ------------------------------------------------------------------------
