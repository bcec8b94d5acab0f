"""Helpers for testing code that uses conveyor.

A runtime on a fresh temporary SQLite file, tuned for tests (no shutdown grace, fast
polling), which your test fixtures can yield::

    import pytest
    from conveyor import testing

    @pytest.fixture
    async def rt():
        async with testing.runtime([ExportQueue()]) as rt:
            yield rt

    @pytest.mark.anyio
    async def test_export(rt):
        job = await rt.enqueue("exports", {"query": "q"})
        await rt.drain()                       # until no job is runnable
        assert (await rt.job_status("exports", job.id)).status == "completed"

Everything is real: the same engine and store as in production, on a throwaway file.
Time can be moved instead of waited for: pass ``clock=ManualClock()`` and call
``clock.advance(seconds)`` (delays, periodic ticks, leases and retention follow it).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ._clock import ManualClock
from ._queue import Queue
from ._runtime import Runtime

__all__ = ("ManualClock", "runtime")


@asynccontextmanager
async def runtime(queues: Sequence[Queue[Any]], **options: Any) -> AsyncIterator[Runtime]:
    """A running Runtime for ``queues`` on a temporary database, removed afterwards.

    ``options`` go to Runtime (for example ``serve=("127.0.0.1", 0)``); by default the
    runtime stops without a grace period and polls other processes every 10 ms.
    """
    options.setdefault("shutdown_grace", 0)
    options.setdefault("poll_interval", 0.01)
    with tempfile.TemporaryDirectory(prefix="conveyor-test-") as tmp:
        async with Runtime(Path(tmp) / "jobs.db", queues=queues, **options) as rt:
            yield rt
