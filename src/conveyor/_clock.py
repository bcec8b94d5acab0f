"""Time, injected: every timestamp, lease deadline and timed wait of the engine comes from
a Clock, so tests can move time instead of sleeping (conveyor.testing.ManualClock).

What a Clock does not govern is real time spent on real things: polling another
process's commits, the shutdown grace, the store's retry delays, websocket timeouts.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from datetime import UTC, datetime
from typing import Final, Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    """Where conveyor reads the time and waits for it to pass."""

    def now(self) -> float:
        """Seconds since the Unix epoch: what timestamps and deadlines are made of."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for measuring intervals."""
        ...

    async def sleep(self, seconds: float, *, until: anyio.Event | None = None) -> None:
        """Return once ``seconds`` have passed on this clock, or earlier once ``until``
        is set (``math.inf``: only then)."""
        ...


class SystemClock:
    """The wall clock and anyio's timers. Subclass it to shift ``now()`` (a clock days
    ahead, as a worker started after downtime sees it)."""

    # The C functions themselves, not methods calling them: the engine reads the clock a
    # few times per job, and a Python frame costs more than the read.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float, *, until: anyio.Event | None = None) -> None:
        if until is None:
            await anyio.sleep(seconds)
            return
        with anyio.move_on_after(seconds):
            await until.wait()


LATEST: Final = 221845392000.0  # 9000-01-01 UTC: what a ManualClock may reach


class ManualClock:
    """A clock that moves only when told: ``advance()`` moves both times on and wakes
    every sleep whose time has come. Starts at ``start`` (default: the wall clock now).

    For tests of timed behaviour (a job delayed by an hour, a periodic tick, a lease
    that expires) that should not take that long::

        clock = ManualClock()
        async with Runtime(path, queues=[...], clock=clock) as rt:
            job = await rt.enqueue("reports", {}, delay=3600)
            clock.advance(3600)
            await rt.wait(job.id, timeout=5)
    """

    def __init__(self, start: float | None = None) -> None:
        if start is not None and not (
            isinstance(start, (int, float)) and not isinstance(start, bool) and 0 <= start <= LATEST
        ):
            raise ValueError(f"a clock starts between 1970 and the year 9000, not at {start!r}")
        self._now = time.time() if start is None else float(start)
        self._elapsed = 0.0
        self._order = itertools.count()  # ties wake in the order they slept
        self._sleepers: list[tuple[float, int, anyio.Event]] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on and wake the sleeps that are due. ValueError for
        anything but a finite number >= 0, or a move past LATEST (times conveyor stores
        must stay datetimes, a century of delay included)."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(
                f"a clock moves forward by a finite number of seconds, not {seconds!r}"
            )
        if self._now + seconds > LATEST:
            raise ValueError(f"a clock {seconds!r}s on would pass the year 9000")
        self._now += seconds
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            heapq.heappop(self._sleepers)[2].set()

    async def sleep(self, seconds: float, *, until: anyio.Event | None = None) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        if math.isinf(seconds):
            await (until.wait() if until is not None else anyio.sleep_forever())
            return
        due = anyio.Event()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), due))
        if until is None:
            await due.wait()
            return
        async with anyio.create_task_group() as tg:

            async def first(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(first, due)
            tg.start_soon(first, until)


_last_datetime: tuple[float, datetime] = (math.nan, datetime.fromtimestamp(0, UTC))


def to_datetime(ts: float) -> datetime:
    """``ts`` as an aware UTC datetime. The last one made is kept and given again for the
    same ``ts``: the rows of one write share their times (a batch's claim time, an
    enqueue_many's creation time), and making each cost the per-job path more than the
    rest of turning a row into a Job. (One tuple, replaced whole: threads may share it.)"""
    global _last_datetime
    last = _last_datetime
    if last[0] == ts:
        return last[1]
    made = datetime.fromtimestamp(ts, UTC)
    _last_datetime = (ts, made)
    return made


def maybe_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else to_datetime(ts)
