"""A queue's resolved settings: a leaf module, so that the engine reads a queue without
importing the Queue facade (conveyor._options builds a spec from a Queue)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ._periodic import PeriodicQueue


class QueueSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's settings, checked and resolved once, when a Runtime is given the queue:
    what the engine and the operations read (never the class again)."""

    name: str
    worker_count: int
    payload_type: Any
    max_attempts: int
    timeout: float | None
    backoff: Callable[[int], float]
    retry_on: tuple[type[BaseException], ...] | None
    rate_limit: tuple[int, float] | None
    handle_item: Callable[[Any], Any] | None  # None: a runtime that does not run jobs
    periodic: PeriodicQueue | None
    # The queue's lifecycle hooks, bound to its instance (None: not defined, and no
    # await for it): see Queue's docstring.
    on_startup: Callable[[], Awaitable[None]] | None = None
    on_shutdown: Callable[[], Awaitable[None]] | None = None
    before_run: Callable[[Any], Awaitable[None]] | None = None
    after_run: Callable[[Any, Any], Awaitable[None]] | None = None
