"""Checking what users pass: queue classes at Runtime construction, and the options of
each enqueue. Every problem is a ValidationError naming the option, raised before
anything is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ._errors import ValidationError
from ._limits import (
    MAX_ATTEMPTS,
    MAX_DELAY,
    PRIORITY_RANGE,
    Limits,
    bounded_seconds,
    integer,
    optional_text,
)
from ._queue import Queue, check_settings


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The checked, resolved options of one enqueue call."""

    created_by: str | None
    priority: int
    scheduled_at: float | None  # None: runs now; else when it falls due
    max_attempts: int
    timeout: float | None


def check_queue_class(queue: Queue[Any], workers: bool) -> None:
    """What a Runtime checks of each queue it is given: the settings (also checked when
    the class is defined), a name, and a handler where jobs are to run."""
    cls = type(queue)
    queue_name = getattr(queue, "name", None)
    if not isinstance(queue_name, str) or not queue_name:
        raise ValidationError(f"{cls.__name__}.name must be a non-empty string")
    check_settings(cls)
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
        else integer("max_attempts", max_attempts, 1, MAX_ATTEMPTS),
        timeout=cls.timeout if timeout is None else bounded_seconds("timeout", timeout),
    )
