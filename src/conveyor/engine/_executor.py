"""Runs one job: its handler inside a cancel scope, its outcome mapped to a Finish."""

from __future__ import annotations

import enum
import inspect
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from .. import _codec
from .._clock import Clock
from .._errors import JobCancelled, JobFailed
from .._logging import get_logger
from .._models import Job
from .._queue import JobContext, Queue, bind
from .._queue import reset as _current_reset
from .._states import JobStatus
from ..store import Finish

log = get_logger("conveyor.job")


class StopReason(enum.Enum):
    CANCEL = "cancel"  # a user asked: the job ends cancelled
    SHUTDOWN = "shutdown"  # the worker is stopping: the job goes back to queued
    LEASE_LOST = "lease lost"  # another worker rescued it: write nothing, stop


class RunningJob:
    """A job while its handler runs in this process."""

    __slots__ = ("announced", "ctx", "is_async", "reason", "scope", "seq", "token")

    def __init__(self, ctx: JobContext, token: str, seq: int, is_async: bool) -> None:
        self.ctx = ctx
        self.token = token
        self.seq = seq  # of its latest transition; progress events carry it
        self.announced = False  # its "running" event was published: reports may follow
        self.is_async = is_async
        self.scope = anyio.CancelScope()
        self.reason: StopReason | None = None

    @property
    def job(self) -> Job:
        return self.ctx.job

    def stop(self, reason: StopReason) -> None:
        """Ask the handler to stop: an async one at its next await, a sync one (in a
        thread, which cannot be interrupted) at its next check_cancelled()."""
        if self.reason is None:
            self.reason = reason
        self.ctx.cancel_requested.set()
        if self.is_async or reason is StopReason.LEASE_LOST:
            self.scope.cancel()

    def abandon(self) -> None:
        """Stop waiting for a sync handler's thread; the thread finishes on its own."""
        if self.reason is None:
            self.reason = StopReason.SHUTDOWN
        self.ctx.cancel_requested.set()
        self.scope.cancel()


class Handler:
    """A queue's ``handle_item`` and how to call it."""

    def __init__(self, queue: Queue[Any]) -> None:
        fn: Callable[[Any], Any] = queue.handle_item  # type: ignore[attr-defined]
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.payload_type = queue.payload_type
        cls = type(queue)  # read through the class: a function there is not a method
        self.backoff = cls.backoff
        self.retry_on = cls.retry_on
        # Sync handlers get their own thread limit, so a busy queue cannot starve others
        # of anyio's shared default thread pool.
        self.limiter = anyio.CapacityLimiter(queue.worker_count)

    def _payload(self, job: Job) -> Any:
        if self.payload_type is Any:
            return job.payload
        return msgspec.convert(job.payload, self.payload_type)


def _finish(run: RunningJob, status: JobStatus, **fields: Any) -> Finish:
    return Finish(
        job_id=run.job.id, token=run.token, status=status, progress=run.ctx.progress, **fields
    )


def _stopped(run: RunningJob) -> Finish | None:
    match run.reason:
        case StopReason.LEASE_LOST:
            return None
        case StopReason.SHUTDOWN:
            return _finish(run, JobStatus.QUEUED, message="requeued: worker shutting down")
        case _:
            return _finish(run, JobStatus.CANCELLED, message="cancelled")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _failed(handler: Handler, run: RunningJob, exc: BaseException, now: float) -> Finish:
    """Fail the run: for good, or (attempts and ``retry_on`` allowing) until a retry."""
    error = _error_text(exc)
    tb = "".join(traceback.format_exception(exc))
    job = run.job
    retry_on = handler.retry_on
    if job.attempts < job.max_attempts and (retry_on is None or isinstance(exc, retry_on)):
        delay = max(0.0, float(handler.backoff(job.attempts)))
        return _finish(
            run,
            JobStatus.SCHEDULED,
            error=error,
            traceback=tb,
            scheduled_at=now + delay,
            message=f"attempt {job.attempts} of {job.max_attempts} failed;"
            f" retry in {delay:.3g}s: {error}",
        )
    return _finish(run, JobStatus.FAILED, error=error, traceback=tb, message=error)


async def execute(handler: Handler, run: RunningJob, clock: Clock) -> Finish | None:
    """Run the handler and return what to write, or None when nothing may be written.

    Only this run's own scope is caught; a cancellation from outside (the runtime being
    torn down) propagates, leaving the lease for the runtime to release. The job's
    timeout is that scope's deadline.
    """
    token = bind(run.ctx)
    outcome: Finish | None = None
    try:
        outcome = await _run(handler, run, clock)
        return outcome
    finally:
        _log_outcome(outcome)
        _current_reset(token)


def _log_outcome(outcome: Finish | None) -> None:
    """One record per run, logged in the job's context (so it carries its id)."""
    if outcome is None:
        log.info("stopped without an outcome (lease lost or runtime torn down)")
    elif outcome.status is JobStatus.FAILED:
        log.warning("failed: %s", outcome.error)
    elif outcome.status is JobStatus.SCHEDULED:
        log.info("%s", outcome.message)
    else:
        log.debug("%s", outcome.message or outcome.status.value)


async def _run(handler: Handler, run: RunningJob, clock: Clock) -> Finish | None:
    log.debug("started (attempt %d of %d)", run.job.attempts, run.job.max_attempts)
    outcome: Finish | None = None
    timeout = run.job.timeout
    with run.scope:
        if timeout is not None:
            run.scope.deadline = anyio.current_time() + timeout
        try:
            payload = handler._payload(run.job)
            if handler.is_async:
                result = await handler.fn(payload)
            else:
                result = await anyio.to_thread.run_sync(
                    handler.fn, payload, abandon_on_cancel=True, limiter=handler.limiter
                )
            if run.ctx.failed_error is not None:  # fail_job() raised, and was swallowed
                raise JobFailed(run.ctx.failed_error)
            try:
                encoded = _codec.encode(result)
            except (TypeError, ValueError, OverflowError) as exc:
                raise TypeError(f"the handler's result is not JSON-serialisable: {exc}") from None
            outcome = _finish(run, JobStatus.COMPLETED, result=encoded)
        except JobFailed as exc:
            outcome = _finish(run, JobStatus.FAILED, error=exc.error, message=exc.error)
        except JobCancelled:
            outcome = _stopped(run)
        except Exception as exc:
            outcome = _failed(handler, run, exc, clock.now())
    if run.scope.cancelled_caught:
        if run.reason is None:  # nobody stopped it: the deadline passed
            run.ctx.cancel_requested.set()  # a sync handler's thread stops at its next check
            timed_out = TimeoutError(f"timed out after {timeout:g}s")
            outcome = _failed(handler, run, timed_out, clock.now())
        else:
            outcome = _stopped(run)
    return outcome
