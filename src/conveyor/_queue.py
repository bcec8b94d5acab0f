"""Queue classes: what a queue is (its settings, checked where the class is written)
and the methods its handler calls (they delegate to conveyor._context)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from . import _limits
from ._context import check_cancelled, current_job, fail_job, report_progress
from ._errors import ValidationError
from ._models import Job
from ._periodic import parse_schedule
from .backoff import exponential

PayloadT = TypeVar("PayloadT")

HOOKS = ("on_startup", "on_shutdown", "before_run", "after_run")  # see Queue's docstring


class Queue(Generic[PayloadT]):
    """Base class of a queue: subclass it, set ``name``, write ``handle_item``.

    ``handle_item(self, item)`` may be ``async def`` (runs in the event loop; keep it
    non-blocking) or a plain ``def`` (runs in a worker thread). Its return value, a JSON
    value, is stored as the job's result. ``Queue[SomeStruct]`` makes payloads typed:
    enqueue validates them and the handler receives a ``SomeStruct``.

    One instance serves every job of the queue at once, so keep per-job state in locals.

    Lifecycle hooks, each an optional ``async def`` method (see docs/hooks.md), run by
    every runtime that runs the queue's workers:

    - ``on_startup(self)``: once, before the queue's first job is claimed (open an HTTP
      client or a connection pool here). If it raises, the runtime does not start:
      HookFailed names the queue and the hook.
    - ``on_shutdown(self)``: once, after the queue's last run in this runtime ended
      (also when the runtime failed to start after this queue's on_startup succeeded).
      What it raises is logged.
    - ``before_run(self, job)``: before each run's handler, in the run (its timeout,
      cancellation and ``current_job()`` apply). What it raises fails the run as the
      handler raising would, retries included.
    - ``after_run(self, job, outcome)``: after each run, whatever its end (a
      :class:`RunOutcome`: completed, failed, scheduled for a retry, cancelled, put
      back). What it raises is logged and changes nothing.
    """

    name: ClassVar[str]
    worker_count: ClassVar[int] = 1
    """How many jobs of this queue run at once in one process."""
    payload_type: ClassVar[Any] = Any
    """Set from ``Queue[T]``; ``Any`` means any JSON value."""
    max_attempts: ClassVar[int] = 1
    """How many times a job may start before a failure is final (``enqueue`` may
    override it per job). Between attempts the job waits ``scheduled``."""
    backoff: ClassVar[Callable[[int], float]] = staticmethod(exponential(base=1.0, cap=300.0))
    """Seconds to wait after failed attempt n before the next: see conveyor.backoff."""
    retry_on: ClassVar[tuple[type[BaseException], ...] | None] = None
    """Retry only failures of these exception types (None: any exception). A failure
    by ``fail_job`` and a cancellation never retry."""
    rate_limit: ClassVar[tuple[int, float] | None] = None
    """``(count, seconds)``: at most ``count`` jobs of this queue start in any window of
    ``seconds`` in this process (None: no limit beyond ``worker_count``)."""
    periodic: ClassVar[str | float | None] = None
    """Enqueue a job by itself on a schedule: a cron expression (``"*/5 * * * *"``, UTC;
    needs ``conveyor[cron]``) or a number of seconds. Each tick gets exactly one job,
    however many worker processes run the queue and across restarts."""
    periodic_payload: ClassVar[Any] = None
    """The payload of each periodic job (checked against the queue's type)."""
    periodic_catch_up: ClassVar[int] = 0
    """After downtime, how many of the latest missed ticks to still enqueue (0: none,
    the schedule resumes at the next tick; never a burst of every missed one)."""
    timeout: ClassVar[float | None] = None
    """Seconds a run may take before it is cancelled and fails (or retries) as timed
    out; ``enqueue`` may override it per job. A sync handler's thread is abandoned."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Queue:
                (arg,) = get_args(base)
                if not isinstance(arg, TypeVar):
                    cls.payload_type = arg
        # A setting that does not fit fails where it is written, at class definition.
        check_settings(cls, own_only=True)

    def report_progress(
        self, current: int | float = 0, total: int | float | None = None, message: str | None = None
    ) -> None:
        """See :func:`conveyor.report_progress`."""
        report_progress(current, total, message)

    def check_cancelled(self) -> None:
        """See :func:`conveyor.check_cancelled`."""
        check_cancelled()

    def fail_job(self, error: str) -> None:
        """See :func:`conveyor.fail_job`."""
        fail_job(error)

    @property
    def current_job(self) -> Job:
        """See :func:`conveyor.current_job`."""
        return current_job()


def check_settings(cls: type[Queue[Any]], *, own_only: bool = False) -> None:
    """ValidationError, naming ``Class.setting``, for a queue setting that does not fit;
    ``own_only``: only the settings ``cls`` itself sets (as it is being defined)."""

    def given(setting: str) -> bool:
        return not own_only or setting in vars(cls)

    where = cls.__name__
    if given("name") and hasattr(cls, "name"):
        _limits.name(f"{where}.name", cls.name)
    if given("worker_count"):
        _limits.integer(f"{where}.worker_count", cls.worker_count, 1, _limits.MAX_WORKER_COUNT)
    if given("max_attempts"):
        _limits.integer(f"{where}.max_attempts", cls.max_attempts, 1, _limits.MAX_ATTEMPTS)
    if given("timeout") and cls.timeout is not None:
        _limits.bounded_seconds(f"{where}.timeout", cls.timeout)
    if given("rate_limit") and cls.rate_limit is not None:
        if not (isinstance(cls.rate_limit, tuple) and len(cls.rate_limit) == 2):
            raise ValidationError(f"{where}.rate_limit must be (count, seconds)")
        _limits.integer(f"{where}.rate_limit count", cls.rate_limit[0], 1, 2**31 - 1)
        _limits.bounded_seconds(f"{where}.rate_limit seconds", cls.rate_limit[1])
    if given("backoff") and not callable(cls.backoff):
        raise ValidationError(f"{where}.backoff must be callable (attempt -> seconds)")
    retry_on = cls.retry_on
    if given("retry_on") and not (
        retry_on is None
        or (
            isinstance(retry_on, tuple)
            and all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on)
        )
    ):
        raise ValidationError(f"{where}.retry_on must be a tuple of exception types")
    if given("periodic") and cls.periodic is not None:
        parse_schedule(f"{where}.periodic", cls.periodic)
    for hook in HOOKS:
        if given(hook):
            check_hook(f"{where}.{hook}", getattr(cls, hook, None))
    if given("periodic_catch_up"):
        _limits.integer(f"{where}.periodic_catch_up", cls.periodic_catch_up, 0, 1000)


def check_hook(field: str, method: Any) -> None:
    """ValidationError naming ``field`` unless ``method`` is None or an async function."""
    if method is not None and not inspect.iscoroutinefunction(method):
        what = "a plain def" if callable(method) else _limits.shown(method)
        raise ValidationError(f"{field} must be an async def method, not {what}")
