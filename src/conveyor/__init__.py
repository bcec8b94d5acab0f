"""conveyor: an asyncio-native background job runtime.

Durable queues on SQLite with bounded concurrency, live progress, cancellation and
crash recovery. Start with :class:`Runtime` and :class:`Queue`.
"""

from ._bus import EventStream as EventStream
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._context import check_cancelled as check_cancelled
from ._context import current_job as current_job
from ._context import fail_job as fail_job
from ._context import report_progress as report_progress
from ._context import transaction as transaction
from ._errors import ConveyorError as ConveyorError
from ._errors import EventStreamOverflow as EventStreamOverflow
from ._errors import HookFailed as HookFailed
from ._errors import InvalidTransition as InvalidTransition
from ._errors import JobCancelled as JobCancelled
from ._errors import JobFailed as JobFailed
from ._errors import JobNotFound as JobNotFound
from ._errors import MissingExtra as MissingExtra
from ._errors import NotInJob as NotInJob
from ._errors import QueueNotFound as QueueNotFound
from ._errors import RuntimeClosed as RuntimeClosed
from ._errors import ServerError as ServerError
from ._errors import StoreBusy as StoreBusy
from ._errors import StoreError as StoreError
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import ValidationError as ValidationError
from ._errors import WaitTimeout as WaitTimeout
from ._limits import Limits as Limits
from ._logging import JobLogFilter as JobLogFilter
from ._models import Event as Event
from ._models import HistoryEntry as HistoryEntry
from ._models import Job as Job
from ._models import Progress as Progress
from ._models import QueueState as QueueState
from ._models import RunOutcome as RunOutcome
from ._models import WorkerState as WorkerState
from ._queue import Queue as Queue
from ._runtime import Runtime as Runtime
from ._states import TERMINAL as TERMINAL
from ._states import JobStatus as JobStatus
from ._version import VERSION as _VERSION
from .store import SQLiteStore as SQLiteStore

__version__ = _VERSION  # the installed version (see _version.py)

__all__ = (
    "TERMINAL",
    "Clock",
    "ConveyorError",
    "Event",
    "EventStream",
    "EventStreamOverflow",
    "HistoryEntry",
    "HookFailed",
    "InvalidTransition",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobLogFilter",
    "JobNotFound",
    "JobStatus",
    "Limits",
    "MissingExtra",
    "NotInJob",
    "Progress",
    "Queue",
    "QueueNotFound",
    "QueueState",
    "RunOutcome",
    "Runtime",
    "RuntimeClosed",
    "SQLiteStore",
    "ServerError",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "ValidationError",
    "WaitTimeout",
    "WorkerState",
    "check_cancelled",
    "current_job",
    "fail_job",
    "report_progress",
    "transaction",
)
