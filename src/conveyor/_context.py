"""The running job's context, and the helpers a handler calls while its job runs.

The helpers find the running job through a context variable, so helper functions called
from a handler (in its task, or in the worker thread of a sync handler) can use them too.
A leaf module: the engine binds contexts here without importing the Queue facade.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import anyio.from_thread

from . import _limits
from ._errors import JobCancelled, JobFailed, NotInJob, ValidationError
from ._limits import Limits
from ._models import Job, Progress


class HandlerTransaction(Protocol):
    """The transaction a handler writes in (see :func:`transaction`): the store's
    OutcomeTransaction, as much of it as the handler's side needs."""

    @property
    def connection(self) -> object: ...

    async def rollback(self) -> None: ...


class JobContext:
    """What a handler can reach of its running job. Made by the executor, one per run."""

    __slots__ = (
        "_on_progress",
        "_thread",
        "begin_transaction",
        "cancel_requested",
        "failed_error",
        "job",
        "limits",
        "progress",
        "transaction",
    )

    def __init__(
        self,
        job: Job,
        on_progress: Callable[[JobContext], None],
        limits: Limits,
        begin_transaction: Callable[[], Awaitable[HandlerTransaction]],
    ) -> None:
        self.job = job
        self.limits = limits
        self.progress = job.progress
        self.begin_transaction = begin_transaction
        # Open from the handler's first transaction() until the run's outcome commits
        # with it (or it is rolled back): see conveyor.engine's pool.
        self.transaction: HandlerTransaction | None = None
        # Set once (from the loop) and polled by check_cancelled(), also from a sync
        # handler's worker thread: a plain attribute, as a bool's store and load are
        # atomic, and a threading.Event per run cost the hot path more than the run.
        self.cancel_requested = False
        self.failed_error: str | None = None
        self._on_progress = on_progress
        self._thread = threading.get_ident()

    def report(self, progress: Progress) -> None:
        self.progress = progress
        if threading.get_ident() == self._thread:
            self._on_progress(self)
        else:  # a sync handler's worker thread: hand the event to the loop
            anyio.from_thread.run_sync(self._on_progress, self)


_current: ContextVar[JobContext | None] = ContextVar("conveyor_current_job", default=None)


def current_context() -> JobContext | None:
    """The running job's context, or None outside a handler."""
    return _current.get(None)


def _context(helper: str) -> JobContext:
    ctx = _current.get(None)
    if ctx is None:
        raise NotInJob(f"{helper}() can only be called while a job handler runs")
    return ctx


def report_progress(
    current: int | float = 0, total: int | float | None = None, message: str | None = None
) -> None:
    """Record how far the running job has come and broadcast it at once.

    Cheap enough to call in a tight loop: the event goes out immediately, while the store
    write is coalesced (the latest report per job is written every fraction of a second).

    ``current`` and ``total`` are finite numbers, ``message`` text within the runtime's
    ``Limits.progress_message_bytes``; anything else raises ValidationError naming the
    argument, and the report is not made (the job goes on unless the error escapes).
    """
    ctx = _context("report_progress")
    progress = Progress(
        current=_limits.number("report_progress(current=)", current),
        total=None if total is None else _limits.number("report_progress(total=)", total),
        message=_limits.optional_text(
            "report_progress(message=)", message, ctx.limits.progress_message_bytes
        ),
    )
    ctx.report(progress)


def check_cancelled() -> None:
    """Raise JobCancelled if cancellation of the running job was requested.

    Async handlers are also interrupted at their next ``await``; a sync handler running
    in a worker thread can only stop here, so call it at safe points in long loops.
    """
    if _context("check_cancelled").cancel_requested:
        raise JobCancelled("cancellation was requested")


def fail_job(error: str) -> None:
    """End the running job as ``failed`` with ``error`` and no retry. Does not return.

    ``error`` must be a string (ValidationError otherwise); past the runtime's
    ``Limits.error_bytes`` it is stored cut, with a note saying so."""
    ctx = _context("fail_job")
    if not isinstance(error, str):
        raise ValidationError(f"fail_job(error=) must be a string, not {type(error).__name__}")
    ctx.failed_error = _limits.storable(error, ctx.limits.error_bytes)
    raise JobFailed(ctx.failed_error)


@asynccontextmanager
async def transaction() -> AsyncIterator[Any]:
    """A database connection inside a transaction that commits together with the running
    job's outcome: the handler's writes and its completion are stored both or neither.

    ``async with conveyor.transaction() as conn:`` gives an asyncpg connection of the
    PostgreSQL store's database. The block's end does not commit: the transaction stays
    open until the handler returns, then commits with the job's completion (its result
    included). If the handler raises, is cancelled, times out, or its worker dies or
    loses the job's lease, nothing it wrote through ``conn`` is kept and the job goes on
    as it would have (retried, failed, cancelled, rescued). Every ``transaction()``
    block of one run shares the one transaction; one left by an exception rolls it back
    at once (a later block begins a new one). The server ends a transaction idle for
    10 s, so keep slow work out of the time between the block and the return.

    Async handlers only; a SQLite store raises ValidationError, as does a call outside
    a handler (NotInJob).
    """
    ctx = _context("transaction")
    if ctx.transaction is None:
        ctx.transaction = await ctx.begin_transaction()
    held = ctx.transaction
    try:
        yield held.connection
    except BaseException:
        if ctx.transaction is held:
            ctx.transaction = None
            await held.rollback()
        raise


def current_job() -> Job:
    """The record of the running job, as it was when it was claimed."""
    return _context("current_job").job


def bind(ctx: JobContext | None) -> contextvars.Token[JobContext | None]:
    """Make ``ctx`` the current job for this task (the executor calls this)."""
    return _current.set(ctx)


def reset(token: contextvars.Token[JobContext | None]) -> None:
    """Undo :func:`bind` when the run ends, so later records of the task name no job."""
    _current.reset(token)
