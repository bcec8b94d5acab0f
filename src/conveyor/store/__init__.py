"""Persistence backends behind one protocol. Only this package writes SQL.

``PostgresStore`` is imported on first use (it needs asyncpg, the ``postgres`` extra).
"""

from typing import TYPE_CHECKING, Any

from ._base import (
    CommitWatch as CommitWatch,
)
from ._base import (
    OutcomeTransaction as OutcomeTransaction,
)
from ._base import (
    QueueSettings as QueueSettings,
)
from ._base import (
    Store as Store,
)
from ._base import (
    StoreReads as StoreReads,
)
from ._base import (
    StoreWrites as StoreWrites,
)
from ._base import (
    WorkerRegistry as WorkerRegistry,
)
from ._open import store_at as store_at
from ._records import (
    ACTED_ON as ACTED_ON,
)
from ._records import (
    Claimed as Claimed,
)
from ._records import (
    ClaimParams as ClaimParams,
)
from ._records import (
    EarlyClaims as EarlyClaims,
)
from ._records import (
    Finish as Finish,
)
from ._records import (
    FinishedCount as FinishedCount,
)
from ._records import (
    JobMatch as JobMatch,
)
from ._records import (
    ListParams as ListParams,
)
from ._records import (
    NewJob as NewJob,
)
from ._records import (
    PausedQueue as PausedQueue,
)
from ._records import (
    ProgressWrite as ProgressWrite,
)
from ._records import (
    PurgeParams as PurgeParams,
)
from ._records import (
    RescueParams as RescueParams,
)
from ._records import (
    RunningProgress as RunningProgress,
)
from ._records import (
    Transition as Transition,
)
from ._records import (
    WorkerRecord as WorkerRecord,
)
from .sqlite import SQLiteStore as SQLiteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore as PostgresStore

__all__ = (
    "ClaimParams",
    "Claimed",
    "CommitWatch",
    "EarlyClaims",
    "Finish",
    "FinishedCount",
    "JobMatch",
    "ListParams",
    "NewJob",
    "OutcomeTransaction",
    "PausedQueue",
    "PostgresStore",
    "ProgressWrite",
    "PurgeParams",
    "QueueSettings",
    "RescueParams",
    "RunningProgress",
    "SQLiteStore",
    "Store",
    "StoreReads",
    "StoreWrites",
    "Transition",
    "WorkerRecord",
    "WorkerRegistry",
    "store_at",
)


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
