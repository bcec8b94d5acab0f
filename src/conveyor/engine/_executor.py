"""Runs one job: its handler inside a cancel scope, its outcome mapped to a Finish."""

from __future__ import annotations

import enum
import inspect
import traceback
from typing import Any, cast

import anyio
import anyio.to_thread
import msgspec

from .. import _codec
from .._clock import Clock
from .._context import JobContext, bind
from .._context import reset as _current_reset
from .._errors import JobCancelled, JobFailed, StoreError, ValidationError
from .._limits import Limits, describe, storable
from .._logging import get_logger
from .._models import NO_PROGRESS, Job, Progress
from .._primitives import new_scope
from .._spec import QueueSpec
from .._states import JobStatus
from .._tracing import TRACING
from ..store import Finish, OutcomeTransaction

log = get_logger("conveyor.job")


class StopReason(enum.Enum):
    CANCEL = "cancel"  # a user asked: the job ends cancelled
    SHUTDOWN = "shutdown"  # the worker is stopping: the job goes back to queued
    LEASE_LOST = "lease lost"  # another worker rescued it: write nothing, stop


class RunningJob:
    """A job while its handler runs in this process."""

    __slots__ = ("announced", "began", "ctx", "is_async", "reason", "scope", "seq", "token")

    def __init__(self, ctx: JobContext, token: str, seq: int, is_async: bool) -> None:
        self.ctx = ctx
        self.token = token
        self.seq = seq  # of its latest transition; progress events carry it
        self.announced = False  # its "running" event was published: reports may follow
        self.is_async = is_async
        self.scope = new_scope()
        self.reason: StopReason | None = None
        self.began = 0.0  # the clock's monotonic time at its start, when runs are counted

    @property
    def job(self) -> Job:
        return self.ctx.job

    def take_transaction(self) -> OutcomeTransaction | None:
        """The transaction the handler opened (conveyor.transaction()), now the run's to
        end. The engine gave the context the store's outcome_transaction to open it."""
        held = cast("OutcomeTransaction | None", self.ctx.transaction)
        self.ctx.transaction = None
        return held

    def stop(self, reason: StopReason) -> None:
        """Ask the handler to stop: an async one at its next await, a sync one (in a
        thread, which cannot be interrupted) at its next check_cancelled()."""
        if self.reason is None:
            self.reason = reason
        self.ctx.cancel_requested = True
        if self.is_async or reason is StopReason.LEASE_LOST:
            self.scope.cancel()

    def abandon(self) -> None:
        """Stop waiting for a sync handler's thread; the thread finishes on its own."""
        if self.reason is None:
            self.reason = StopReason.SHUTDOWN
        self.ctx.cancel_requested = True
        self.scope.cancel()


class Handler:
    """A queue's ``handle_item`` and how to call it."""

    def __init__(self, queue: QueueSpec, limits: Limits) -> None:
        if queue.handle_item is None:
            raise ValueError(f"queue {queue.name!r} has no handler to run")
        self.limits = limits
        self.fn = queue.handle_item
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.payload_type = queue.payload_type
        self.backoff = queue.backoff
        self.retry_on = queue.retry_on
        self.before_run = queue.before_run  # None: no await for it (see Queue's hooks)
        # Sync handlers get their own thread limit, so a busy queue cannot starve others
        # of anyio's shared default thread pool.
        self.limiter = anyio.CapacityLimiter(queue.worker_count)

    def _payload(self, job: Job) -> Any:
        if self.payload_type is Any:
            return job.payload
        return msgspec.convert(job.payload, self.payload_type)


def _stopped(run: RunningJob) -> Finish | None:
    job_id, token = run.job.id, run.token
    match run.reason:
        case StopReason.LEASE_LOST:
            return None
        case StopReason.SHUTDOWN:
            return Finish.requeued(job_id, token, "requeued: worker shutting down")
        case _:
            return Finish.cancelled(job_id, token, run.ctx.progress)


def _failure(run: RunningJob, error: str, traceback: str | None = None) -> Finish:
    return Finish.failed(run.job.id, run.token, run.ctx.progress, error, traceback)


MAX_RETRY_DELAY = 365 * 86400.0  # a backoff beyond a year is taken as a year


def _traceback_text(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # a broken __str__ or __traceback__: the error itself still counts
        return f"{describe(exc)} (its traceback could not be formatted)"


def _retry_delay(handler: Handler, attempt: int) -> float:
    """The queue's backoff after failed attempt ``attempt``, as finite seconds >= 0."""
    delay = float(handler.backoff(attempt))
    if delay != delay:  # NaN
        raise ValueError(f"backoff({attempt}) returned NaN")
    return min(max(0.0, delay), MAX_RETRY_DELAY)


def _failed(handler: Handler, run: RunningJob, exc: BaseException, now: float) -> Finish:
    """Fail the run: for good, or (attempts and ``retry_on`` allowing) until a retry.

    Whatever the exception holds, what is stored is text within the limits: an error
    whose ``str()`` raises is recorded by its type, a long one is cut, saying so."""
    limits = handler.limits
    error = storable(describe(exc), limits.error_bytes)
    tb = storable(_traceback_text(exc), limits.traceback_bytes, keep="tail")
    job = run.job
    retry_on = handler.retry_on
    if job.attempts < job.max_attempts and (retry_on is None or isinstance(exc, retry_on)):
        try:
            delay = _retry_delay(handler, job.attempts)
        except Exception as backoff_exc:  # the queue's own backoff is broken: no retry
            error = storable(
                f"{error} (and backoff failed: {describe(backoff_exc)})", limits.error_bytes
            )
            return _failure(run, error, tb)
        return Finish.retry(
            job.id,
            run.token,
            run.ctx.progress,
            error=error,
            traceback=tb,
            at=now + delay,
            message=storable(
                f"attempt {job.attempts} of {job.max_attempts} failed;"
                f" retry in {delay:.3g}s: {error}",
                limits.error_bytes,
            ),
        )
    return _failure(run, error, tb)


def _completed(handler: Handler, run: RunningJob, result: Any) -> Finish:
    """Complete the run with ``result``, or fail it for good when the result cannot be
    stored (not JSON, or over ``Limits.result_bytes``): a retry would return the same."""
    try:
        encoded = _codec.encode_value(
            result, "the handler's result", handler.limits.result_bytes, "Limits.result_bytes"
        )
    except ValidationError as exc:
        return _failure(run, storable(str(exc), handler.limits.error_bytes))
    return Finish.completed(run.job.id, run.token, run.ctx.progress, encoded)


def internal_failure(
    job_id: str, token: str, exc: BaseException, limits: Limits, progress: Progress = NO_PROGRESS
) -> Finish:
    """The outcome of a run that conveyor itself failed to carry out or to record (a bug,
    or an outcome the store refused): the job fails, saying why, and the runtime goes on."""
    error = storable(
        f"conveyor could not record this run's outcome: {describe(exc)}", limits.error_bytes
    )
    return Finish.failed(job_id, token, progress, error)


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


async def run_job(
    handler: Handler, run: RunningJob, clock: Clock
) -> tuple[Finish | None, Finish | None]:
    """Run the job's handler and settle its transaction (see execute and settle): what
    is left for the finisher to write, and how the run ended (what the handler's outcome
    was, also when it committed with the handler's transaction and nothing is left).
    Inside the run's span where OpenTelemetry is installed (see _tracing), so the
    handler's own spans are its children."""
    if TRACING is None or not TRACING.active():
        decided = await execute(handler, run, clock)
        return await settle(handler, run, decided, clock), decided
    with TRACING.process(run.job) as span:
        decided = await execute(handler, run, clock)
        left = await settle(handler, run, decided, clock)
        TRACING.ended(span, left or decided)
        return left, decided


async def settle(
    handler: Handler, run: RunningJob, outcome: Finish | None, clock: Clock
) -> Finish | None:
    """End the transaction the handler wrote in, if it opened one, and return what is
    left for the finisher to write: a completion commits in that transaction (nothing
    left), any other outcome rolls it back and is written as without it. A commit that
    fails is a failed attempt (retried as the queue allows): the handler's writes were
    not kept. Were they, the commit's connection being lost at the last moment, the
    completion committed with them and the lease token it cleared fences that failure
    out."""
    held = run.take_transaction()
    if held is None:
        return outcome
    if outcome is None or outcome.status is not JobStatus.COMPLETED:
        await held.rollback()
        return outcome
    try:
        written = await held.commit(outcome, clock.now())
    except StoreError as exc:
        return _failed(handler, run, exc, clock.now())
    if not written:
        log.warning(
            "outcome and the handler's transaction not committed: the job's lease"
            " had expired and it was rescued; the rescued run decides it"
        )
    return None


async def drop_transaction(run: RunningJob) -> None:
    """Roll back the handler's transaction if no outcome settled it (a conveyor bug
    between the two)."""
    held = run.take_transaction()
    if held is not None:
        await held.rollback()


def _is_cancellation(exc: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(cancelled) is not None
    return isinstance(exc, cancelled)


def _log_outcome(outcome: Finish | None) -> None:
    """One record per run, logged in the job's context (so it carries its id)."""
    if outcome is None:
        log.info("stopped without an outcome (lease lost or runtime torn down)")
    elif outcome.status is JobStatus.FAILED:
        log.warning("failed: %.500s", outcome.error)  # the whole error is in the job
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
            if handler.before_run is not None:  # its errors are the run's, as the handler's
                await handler.before_run(run.job)
            if handler.is_async:
                result = await handler.fn(payload)
            else:
                result = await anyio.to_thread.run_sync(
                    handler.fn, payload, abandon_on_cancel=True, limiter=handler.limiter
                )
            if run.ctx.failed_error is not None:  # fail_job() raised, and was swallowed
                raise JobFailed(run.ctx.failed_error)
            outcome = _completed(handler, run, result)
        except JobFailed as exc:
            if TRACING is not None:
                TRACING.failed(exc)
            text = exc.error if isinstance(exc.error, str) else describe(exc)
            error = storable(text, handler.limits.error_bytes)
            outcome = _failure(run, error)
        except JobCancelled:
            outcome = _stopped(run)
        except BaseException as exc:
            # Whatever the handler raised fails its job only (sys.exit(), a stray
            # KeyboardInterrupt, an exception group), but a cancellation goes on up: this
            # run's own is caught by its scope below, any other is the runtime's.
            if _is_cancellation(exc):
                raise
            if TRACING is not None:
                TRACING.failed(exc)
            outcome = _failed(handler, run, exc, clock.now())
    if run.scope.cancelled_caught:
        if run.reason is None:  # nobody stopped it: the deadline passed
            run.ctx.cancel_requested = True  # a sync handler's thread stops at its next check
            timed_out = TimeoutError(f"timed out after {timeout:g}s")
            if TRACING is not None:
                TRACING.failed(timed_out)
            outcome = _failed(handler, run, timed_out, clock.now())
        else:
            outcome = _stopped(run)
    return outcome
