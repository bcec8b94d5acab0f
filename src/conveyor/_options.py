"""Checking what users pass: queue classes at Runtime construction, and the options of
each enqueue. Every problem is a ValidationError naming the option, raised before
anything is stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ._errors import ValidationError
from ._limits import Limits, integer, name, optional_text, shown
from ._periodic import parse_schedule
from ._queue import Queue

MAX_DELAY = 100 * 365 * 86400.0  # seconds: a delay, an ``at`` or a timeout beyond is refused
MAX_WORKER_COUNT = 10_000  # tasks per queue and process, created up front
MAX_ATTEMPTS = 1_000_000
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The checked, resolved options of one enqueue call."""

    created_by: str | None
    priority: int
    scheduled_at: float | None  # None: runs now; else when it falls due
    max_attempts: int
    timeout: float | None


def _positive_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValidationError(f"{name} must be a number of seconds, not {shown(value)}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ValidationError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {shown(value)}"
        )
    return float(value)


def seconds(name: str, value: Any) -> float:
    """A duration >= 0 given as seconds or a timedelta."""
    return _positive_seconds(name, value, allow_zero=True)


def bounded_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A duration (seconds or a timedelta) of at most MAX_DELAY, > 0 (or >= 0)."""
    checked = _positive_seconds(name, value, allow_zero=allow_zero)
    if checked > MAX_DELAY:
        raise ValidationError(f"{name} must be at most {MAX_DELAY:.0f} seconds (100 years)")
    return checked


def optional_seconds(name: str, value: Any) -> float | None:
    """None, or a duration >= 0 (a wait's timeout)."""
    return None if value is None else seconds(name, value)


def _count(name: str, value: Any, high: int = 2**31 - 1) -> int:
    return integer(name, value, 1, high)


def check_queue_class(queue: Queue[Any], workers: bool) -> None:
    cls = type(queue)
    queue_name = getattr(queue, "name", None)
    if not isinstance(queue_name, str) or not queue_name:
        raise ValidationError(f"{cls.__name__}.name must be a non-empty string")
    name(f"{cls.__name__}.name", queue_name)
    _count(f"{cls.__name__}.worker_count", cls.worker_count, MAX_WORKER_COUNT)
    _count(f"{cls.__name__}.max_attempts", cls.max_attempts, MAX_ATTEMPTS)
    if cls.timeout is not None:
        bounded_seconds(f"{cls.__name__}.timeout", cls.timeout)
    if cls.rate_limit is not None:
        if not (isinstance(cls.rate_limit, tuple) and len(cls.rate_limit) == 2):
            raise ValidationError(f"{cls.__name__}.rate_limit must be (count, seconds)")
        _count(f"{cls.__name__}.rate_limit count", cls.rate_limit[0])
        bounded_seconds(f"{cls.__name__}.rate_limit seconds", cls.rate_limit[1])
    if not callable(cls.backoff):
        raise ValidationError(f"{cls.__name__}.backoff must be callable (attempt -> seconds)")
    retry_on = cls.retry_on
    if retry_on is not None and not (
        isinstance(retry_on, tuple)
        and all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on)
    ):
        raise ValidationError(f"{cls.__name__}.retry_on must be a tuple of exception types")
    if cls.periodic is not None:
        parse_schedule(f"{cls.__name__}.periodic", cls.periodic)
        catch_up = cls.periodic_catch_up
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not 0 <= catch_up <= 1000:
            raise ValidationError(f"{cls.__name__}.periodic_catch_up must be an int from 0 to 1000")
    if workers and not callable(getattr(queue, "handle_item", None)):
        raise ValidationError(f"{cls.__name__} defines no handle_item(self, item) method")


def job_options(
    queue: Queue[Any],
    now: float,
    limits: Limits,
    *,
    created_by: Any,
    priority: Any,
    delay: Any,
    at: Any,
    max_attempts: Any,
    timeout: Any,
) -> JobOptions:
    created_by = optional_text("created_by", created_by, limits.created_by_bytes)
    priority = integer("priority", priority, *PRIORITY_RANGE)
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both")
    scheduled_at = None
    if delay is not None:
        scheduled_at = now + bounded_seconds("delay", delay, allow_zero=True)
    elif at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValidationError("at must be a timezone-aware datetime")
        try:
            scheduled_at = at.timestamp()
        except (OverflowError, ValueError, OSError) as exc:
            raise ValidationError(f"at is out of range: {exc}") from None
        if scheduled_at > now + MAX_DELAY:
            raise ValidationError("at must be at most 100 years from now")
    if scheduled_at is not None and scheduled_at <= now:
        scheduled_at = None  # due already: queue it now
    cls = type(queue)
    return JobOptions(
        created_by=created_by,
        priority=priority,
        scheduled_at=scheduled_at,
        max_attempts=cls.max_attempts
        if max_attempts is None
        else _count("max_attempts", max_attempts, MAX_ATTEMPTS),
        timeout=cls.timeout if timeout is None else bounded_seconds("timeout", timeout),
    )
