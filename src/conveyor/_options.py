"""Checking what users pass: queue classes at Runtime construction, and the options of
each enqueue. Every problem is a ValidationError naming the option, raised before
anything is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ._codec import encode_payload
from ._errors import ValidationError
from ._limits import (
    MAX_ATTEMPTS,
    MAX_DELAY,
    PRIORITY_RANGE,
    Limits,
    bounded_seconds,
    integer,
    optional_text,
    text,
)
from ._models import EnqueueOptions
from ._periodic import PeriodicQueue, parse_schedule
from ._queue import Queue, check_settings
from ._spec import QueueSpec
from ._states import JobStatus
from .store import NewJob


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The checked, resolved options of one enqueue call."""

    created_by: str | None
    priority: int
    scheduled_at: float | None  # None: runs now; else when it falls due
    max_attempts: int
    timeout: float | None
    unique_key: str | None


def check_queue_class(queue: Queue[Any], workers: bool, limits: Limits) -> QueueSpec:
    """What a Runtime checks of each queue it is given: the settings (also checked when
    the class is defined), a name, a handler where jobs are to run, and the periodic
    payload; the result is the queue's resolved spec."""
    cls = type(queue)
    queue_name = getattr(queue, "name", None)
    if not isinstance(queue_name, str) or not queue_name:
        raise ValidationError(f"{cls.__name__}.name must be a non-empty string")
    check_settings(cls)
    handle_item = getattr(queue, "handle_item", None)
    if workers and not callable(handle_item):
        raise ValidationError(f"{cls.__name__} defines no handle_item(self, item) method")
    periodic = None
    if cls.periodic is not None:
        periodic = PeriodicQueue(
            queue_name,
            parse_schedule(f"{cls.__name__}.periodic", cls.periodic),
            encode_payload(cls.periodic_payload, queue.payload_type, limits.payload_bytes),
            cls.periodic_catch_up,
        )
    return QueueSpec(
        name=queue_name,
        worker_count=cls.worker_count,
        payload_type=queue.payload_type,
        max_attempts=cls.max_attempts,
        timeout=None if cls.timeout is None else float(cls.timeout),
        backoff=cls.backoff,  # read through the class: a function there is not a method
        retry_on=cls.retry_on,
        rate_limit=cls.rate_limit,
        handle_item=handle_item if callable(handle_item) else None,
        periodic=periodic,
    )


def job_options(
    queue: QueueSpec,
    now: float,
    limits: Limits,
    options: EnqueueOptions,
) -> JobOptions:
    """The options of one enqueue call, checked (a ValidationError names the first
    refused) and resolved against the queue's defaults and the time now."""
    created_by = optional_text("created_by", options.created_by, limits.created_by_bytes)
    priority = integer("priority", options.priority, *PRIORITY_RANGE)
    delay, at, max_attempts, timeout = (
        options.delay,
        options.at,
        options.max_attempts,
        options.timeout,
    )
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
    return JobOptions(
        created_by=created_by,
        priority=priority,
        scheduled_at=scheduled_at,
        max_attempts=queue.max_attempts
        if max_attempts is None
        else integer("max_attempts", max_attempts, 1, MAX_ATTEMPTS),
        timeout=queue.timeout if timeout is None else bounded_seconds("timeout", timeout),
        unique_key=unique_key(options.unique_key, limits),
    )


def unique_key(key: Any, limits: Limits) -> str | None:
    if key is None:
        return None
    checked = text("unique_key", key, limits.unique_key_bytes)
    if not checked:
        raise ValidationError("unique_key must not be empty")
    return checked


def new_job(
    job_id: str,
    queue: QueueSpec,
    payload: Any,
    options: JobOptions,
    now: float,
    limits: Limits,
) -> NewJob:
    """The row to insert for one payload: validated against the queue's payload type
    and encoded once (ValidationError naming the field, else over the payload limit)."""
    return NewJob(
        id=job_id,
        queue=queue.name,
        status=JobStatus.QUEUED if options.scheduled_at is None else JobStatus.SCHEDULED,
        payload=encode_payload(payload, queue.payload_type, limits.payload_bytes),
        priority=options.priority,
        max_attempts=options.max_attempts,
        created_by=options.created_by,
        created_at=now,
        scheduled_at=options.scheduled_at,
        timeout=options.timeout,
        unique_key=options.unique_key,
    )
