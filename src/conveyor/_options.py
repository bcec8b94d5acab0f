"""Checking what users pass: queue classes at Runtime construction, and the options of
each enqueue. Every problem is a ValidationError naming the option, raised before
anything is stored."""

from __future__ import annotations

from typing import Any

import msgspec

from ._codec import encode_payload
from ._errors import ValidationError
from ._limits import Limits, bounded_seconds, enqueue_options, meta
from ._logging import get_logger
from ._models import EnqueueOptions
from ._periodic import PeriodicQueue, parse_schedule
from ._queue import HOOKS, Queue, check_hook, check_settings
from ._spec import QueueSpec
from ._states import JobStatus
from .store import NewJob

log = get_logger("conveyor")


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The checked, resolved options of one enqueue call."""

    created_by: str | None
    priority: int
    scheduled_at: float | None  # None: runs now; else when it falls due
    max_attempts: int
    timeout: float | None
    unique_key: str | None
    meta: dict[str, str]
    tags: list[str]


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
    hooks: dict[str, Any] = {}
    for hook in HOOKS:  # read from the instance, which may set its own
        hooks[hook] = method = getattr(queue, hook, None)
        check_hook(f"{cls.__name__}.{hook}", method)
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
        **hooks,
    )


def job_options(
    queue: QueueSpec,
    now: float,
    limits: Limits,
    options: EnqueueOptions,
) -> JobOptions:
    """The options of one enqueue call, checked (a ValidationError names the first
    refused; see _limits.enqueue_options) and resolved against the queue's defaults and
    the time now."""
    scheduled_at, options = enqueue_options(options, now, limits)
    return JobOptions(
        created_by=options.created_by,
        priority=options.priority,
        scheduled_at=scheduled_at,
        max_attempts=queue.max_attempts if options.max_attempts is None else options.max_attempts,
        timeout=queue.timeout
        if options.timeout is None
        else bounded_seconds("timeout", options.timeout),
        unique_key=options.unique_key,
        meta=options.meta or {},
        tags=options.tags or [],
    )


def with_trace_context(options: JobOptions, context: dict[str, str], limits: Limits) -> JobOptions:
    """The options with the enqueuing span's trace context added to the meta (see
    _tracing), which it replaces where the caller's meta held those keys. Where the
    caller's meta leaves no room for it (Limits.meta_bytes), the job goes without: a
    trace is not worth refusing an enqueue the caller's own values fit."""
    if not context:
        return options
    merged = {**options.meta, **context}
    try:
        checked = meta("meta", merged, limits.meta_bytes)
    except ValidationError:
        log.debug("no room in the job's meta for its trace context: not carried")
        return options
    return msgspec.structs.replace(options, meta=checked)


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
        meta=options.meta,
        tags=options.tags,
    )
