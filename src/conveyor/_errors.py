"""The one exception tree of conveyor.

Every error conveyor raises on purpose is a :class:`ConveyorError`::

    ConveyorError
    ├── ValidationError        bad input: a payload or an option that does not fit
    ├── QueueNotFound          a queue name this runtime was not given
    ├── JobNotFound            an id with no job behind it (in that queue)
    ├── InvalidTransition      a state change the job's current state does not allow
    ├── JobCancelled           raised inside a handler by check_cancelled()
    ├── JobFailed              raised inside a handler by fail_job(); fails without retry
    ├── WaitTimeout            wait() ran out of time (also a TimeoutError)
    ├── RuntimeClosed          the runtime is not running (not entered, or shut down)
    ├── HookFailed             a queue's on_startup hook raised: the runtime did not start
    ├── NotInJob               a job helper (report_progress, ...) called outside a handler
    ├── EventStreamOverflow    an events() consumer fell too far behind and was dropped
    ├── ServerError            a server answered with an error no class above stands for,
    │                          or could not be reached (conveyor.client)
    ├── MissingExtra           a feature needs a package that is not installed; the
    │                          message says which extra to install
    └── StoreError             the store could not do what was asked; nothing was changed
        ├── StoreBusy          another writer held a lock past the busy or lock timeout
        └── StoreUnavailable   the database cannot be written (read-only, disk full,
                               server down, ...)

A StoreError means the whole operation was rolled back: an enqueue that raised it stored
nothing, so retrying it is safe. The one exception is a PostgreSQL connection lost while a
write was committing: the server may have committed it, and the message says so.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Root of every error conveyor raises on purpose. Catch this to catch them all."""


class ValidationError(ConveyorError, ValueError):
    """Input did not fit: a payload that fails its queue's type, or a bad option.

    Raised before anything is stored. The message names the offending field
    (for example ``Expected `str`, got `int` - at `$.data_id```).
    """


class QueueNotFound(ConveyorError, LookupError):
    """The queue name is not one of the queues this runtime was given."""

    def __init__(self, queue: str, *, message: str | None = None) -> None:
        super().__init__(message or f"unknown queue {queue!r}")
        self.queue = queue


class JobNotFound(ConveyorError, LookupError):
    """No job has this id (or the job belongs to a different queue than the one named)."""

    def __init__(self, job_id: str, *, message: str | None = None) -> None:
        super().__init__(message or f"unknown job {job_id!r}")
        self.job_id = job_id


class InvalidTransition(ConveyorError):
    """The job's current state does not allow the requested change (rerun a running job)."""


class JobCancelled(ConveyorError):
    """Raised by ``check_cancelled()`` inside a handler once cancellation was requested.

    Let it propagate: the job then ends ``cancelled``. Catching it and carrying on makes
    the job finish normally instead.
    """


class JobFailed(ConveyorError):
    """Raised by ``fail_job(error=...)``: the job ends ``failed`` with that error, no retry."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class WaitTimeout(ConveyorError, TimeoutError):
    """``wait()`` gave up before the job reached a terminal state. The job is unaffected."""


class RuntimeClosed(ConveyorError):
    """The runtime is not running: used before ``async with`` or after it was left."""


class HookFailed(ConveyorError):
    """A queue's ``on_startup`` hook raised (``__cause__`` is what it raised), so the
    runtime did not start. ``queue`` and ``hook`` name it."""

    def __init__(self, queue: str, hook: str, error: str) -> None:
        super().__init__(f"queue {queue!r}: {hook}() failed: {error}")
        self.queue = queue
        self.hook = hook


class NotInJob(ConveyorError, RuntimeError):
    """``report_progress``, ``check_cancelled``, ``fail_job`` or ``current_job`` was called
    outside a running handler (or a task/thread it did not start)."""


class EventStreamOverflow(ConveyorError):
    """An ``events()`` consumer fell more than its buffer behind and was unsubscribed.

    Progress events are coalesced before this happens; it means state transitions would
    otherwise have been lost. Re-subscribe and read current state with ``list_jobs``.
    """


class ServerError(ConveyorError):
    """A conveyor server (seen from conveyor.client) answered with an error that no
    narrower class stands for, or the connection to it failed. ``code`` is the
    protocol's error code (``unreachable``, ``disconnected``, ``http_401``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class MissingExtra(ConveyorError, ImportError):
    """A feature was used whose optional package is not installed (Prometheus metrics
    without prometheus-client); the message names the ``pip install`` that adds it."""


class StoreError(ConveyorError):
    """The store could not complete an operation; it was rolled back and changed nothing."""


class StoreBusy(StoreError):
    """Another connection held a lock this write needed past the timeout: SQLite's write
    lock past ``busy_timeout``, a PostgreSQL row past ``lock_timeout``."""


class StoreUnavailable(StoreError):
    """The database cannot be written or opened: read-only file, full disk, bad path, a
    PostgreSQL server that does not answer.

    ``outcome_unknown`` is True in the one case where the change may have been stored
    after all: a PostgreSQL connection lost while the write was committing."""

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
