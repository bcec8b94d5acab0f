"""Checking what users pass: queue classes at Runtime construction, and the options of
each enqueue. Every problem is a ValidationError naming the option, raised before
anything is stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ._errors import ValidationError
from ._periodic import parse_schedule
from ._queue import Queue


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
        raise ValidationError(f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ValidationError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(value)


def seconds(name: str, value: Any) -> float:
    """A duration >= 0 given as seconds or a timedelta."""
    return _positive_seconds(name, value, allow_zero=True)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name} must be an int >= 1, not {value!r}")
    return value


def check_queue_class(queue: Queue[Any], workers: bool) -> None:
    cls = type(queue)
    name = getattr(queue, "name", None)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{cls.__name__}.name must be a non-empty string")
    _count(f"{cls.__name__}.worker_count", cls.worker_count)
    _count(f"{cls.__name__}.max_attempts", cls.max_attempts)
    if cls.timeout is not None:
        _positive_seconds(f"{cls.__name__}.timeout", cls.timeout)
    if cls.rate_limit is not None:
        if not (isinstance(cls.rate_limit, tuple) and len(cls.rate_limit) == 2):
            raise ValidationError(f"{cls.__name__}.rate_limit must be (count, seconds)")
        _count(f"{cls.__name__}.rate_limit count", cls.rate_limit[0])
        _positive_seconds(f"{cls.__name__}.rate_limit seconds", cls.rate_limit[1])
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
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or catch_up < 0:
            raise ValidationError(f"{cls.__name__}.periodic_catch_up must be an int >= 0")
    if workers and not callable(getattr(queue, "handle_item", None)):
        raise ValidationError(f"{cls.__name__} defines no handle_item(self, item) method")


def job_options(
    queue: Queue[Any],
    now: float,
    *,
    created_by: Any,
    priority: Any,
    delay: Any,
    at: Any,
    max_attempts: Any,
    timeout: Any,
) -> JobOptions:
    if created_by is not None and not isinstance(created_by, str):
        raise ValidationError(f"created_by must be a string, not {type(created_by).__name__}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(f"priority must be an int, not {type(priority).__name__}")
    if not -(2**31) <= priority < 2**31:
        raise ValidationError(f"priority {priority} is out of range (32-bit)")
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both")
    scheduled_at = None
    if delay is not None:
        scheduled_at = now + _positive_seconds("delay", delay, allow_zero=True)
    elif at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValidationError("at must be a timezone-aware datetime")
        scheduled_at = at.timestamp()
    if scheduled_at is not None and scheduled_at <= now:
        scheduled_at = None  # due already: queue it now
    cls = type(queue)
    return JobOptions(
        created_by=created_by,
        priority=priority,
        scheduled_at=scheduled_at,
        max_attempts=cls.max_attempts
        if max_attempts is None
        else _count("max_attempts", max_attempts),
        timeout=cls.timeout if timeout is None else _positive_seconds("timeout", timeout),
    )
