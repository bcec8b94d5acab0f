"""anyio's Event and CancelScope, made directly as the running backend's classes.

``anyio.Event()`` and ``anyio.CancelScope()`` look the backend up on every call (which
async library runs, then its class): on the per-job path, where a run, a batch or a wake
makes one, that lookup showed in profiles as more than the object itself. The runtime
runs on asyncio only (aiosqlite, asyncpg), so the class found the first time is the
class for the life of the process. Outside a running loop (an object made before the
runtime starts) anyio's own constructors are used, as they know what to do there.
"""

from __future__ import annotations

import asyncio
import math

import anyio

_event_class: type[anyio.Event] | None = None
_scope_class: type[anyio.CancelScope] | None = None


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def new_event() -> anyio.Event:
    """``anyio.Event()``."""
    global _event_class
    if _event_class is None:
        if not _in_loop():
            return anyio.Event()
        _event_class = type(anyio.Event())
    return _event_class()


def new_scope(*, deadline: float = math.inf, shield: bool = False) -> anyio.CancelScope:
    """``anyio.CancelScope(deadline=deadline, shield=shield)``."""
    global _scope_class
    if _scope_class is None:
        if not _in_loop():
            return anyio.CancelScope(deadline=deadline, shield=shield)
        _scope_class = type(anyio.CancelScope())
    return _scope_class(deadline=deadline, shield=shield)
