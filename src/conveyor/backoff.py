"""Retry delays: a backoff maps the number of the attempt that failed (1, 2, ...) to the
seconds to wait before the next one. Set one as ``Queue.backoff``."""

from __future__ import annotations

import random
from collections.abc import Callable

Backoff = Callable[[int], float]

__all__ = ("Backoff", "constant", "exponential")


def exponential(base: float = 1.0, cap: float = 300.0, *, jitter: bool = True) -> Backoff:
    """``base * 2**(attempt - 1)`` seconds, at most ``cap``.

    With ``jitter`` (the default) each delay is drawn between half and all of that, so
    jobs that failed together (a dependency down) do not all retry at the same instant.
    """
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be > 0")

    def delay(attempt: int) -> float:
        seconds = min(cap, base * 2.0 ** min(attempt - 1, 64))
        return seconds * random.uniform(0.5, 1.0) if jitter else seconds

    return delay


def constant(seconds: float) -> Backoff:
    """The same delay after every failed attempt."""
    if seconds < 0:
        raise ValueError("seconds must be >= 0")
    return lambda attempt: seconds
