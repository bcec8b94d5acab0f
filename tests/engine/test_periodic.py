"""Periodic queues: one job per tick across processes and restarts, no burst after
downtime, cron expressions."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime, SystemClock, ValidationError
from conveyor.testing import ManualClock

from ..conftest import Worker, wait_until

pytestmark = pytest.mark.anyio

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def tick_ms(job_id: str) -> int:
    """The millisecond time part of an id: its first 10 characters (50 bits, top 2 zero)."""
    value = 0
    for char in job_id[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


class Ticker(Queue):
    name = "ticker"
    worker_count = 4
    periodic = 0.1
    periodic_payload: ClassVar[Any] = {"kind": "tick"}

    async def handle_item(self, item: dict[str, str]) -> str:
        return item["kind"]


async def test_a_periodic_queue_enqueues_a_job_per_tick(location: str) -> None:
    async with Runtime(location, queues=[Ticker()]) as rt:
        with anyio.fail_after(10):
            await wait_until(lambda: _count(rt, 5))
        jobs = await rt.list_jobs(queue="ticker", limit=100)
    assert all(j.created_by == "periodic" for j in jobs)
    assert all(j.payload == {"kind": "tick"} for j in jobs)
    ticks = [tick_ms(j.id) for j in jobs]
    assert len(set(ticks)) == len(ticks)
    assert all(t % 100 == 0 for t in ticks)  # on the schedule's ticks


class HourlyTicks(Queue):
    name = "hourly_ticks"
    periodic = 3600.0

    async def handle_item(self, item: Any) -> None:
        return None


async def test_a_manual_clock_makes_the_ticks_come(db_path: Path) -> None:
    clock = ManualClock(start=1_800_000_000)  # a whole hour: the next tick is an hour on
    async with (
        Runtime(db_path, queues=[HourlyTicks()], clock=clock) as rt,
        rt.events(queue="hourly_ticks", statuses=[JobStatus.COMPLETED]) as done,
    ):
        clock.advance(3599)
        assert await rt.list_jobs() == []
        with anyio.fail_after(10):
            clock.advance(1)
            await done.__anext__()
            clock.advance(3600)
            await done.__anext__()
        jobs = await rt.list_jobs()
    assert sorted(tick_ms(j.id) for j in jobs) == [1_800_003_600_000, 1_800_007_200_000]


async def _count(rt: Runtime, n: int) -> bool:
    done = await rt.list_jobs(queue="ticker", status=JobStatus.COMPLETED, limit=100)
    return len(done) >= n


async def test_two_processes_on_one_file_make_one_job_per_tick(location: str) -> None:
    started = time.time()
    async with (
        Runtime(location, queues=[Ticker()]) as a,
        Runtime(location, queues=[Ticker()]) as b,
    ):
        with anyio.fail_after(10):
            await wait_until(lambda: _count(a, 8))
        jobs = await b.list_jobs(queue="ticker", limit=100)
    elapsed = time.time() - started
    ticks = [tick_ms(j.id) for j in jobs]
    assert len(set(ticks)) == len(ticks)  # no tick twice
    assert len(ticks) <= elapsed / 0.1 + 2  # no more jobs than ticks


async def test_worker_processes_racing_for_ticks_make_one_job_each(
    location: str, spawn: type[Worker]
) -> None:
    class Tick(Queue):
        name = "tick"

    started = time.time()
    workers = [spawn("--periodic") for _ in range(3)]
    async with Runtime(location, queues=[Tick()], workers=False) as rt:

        async def enough() -> bool:
            return len(await rt.list_jobs(queue="tick", status="completed", limit=100)) >= 10

        with anyio.fail_after(30):
            await wait_until(enough, 0.05)
        for w in workers:
            w.signal(signal.SIGTERM)
        with anyio.fail_after(30):
            for w in workers:
                await w.exited()
        jobs = await rt.list_jobs(queue="tick", limit=1000)
    elapsed = time.time() - started
    ticks = [tick_ms(j.id) for j in jobs]
    assert len(set(ticks)) == len(ticks)  # three processes, still one job per tick
    assert len(ticks) <= elapsed / 0.1 + 2
    assert len({j.result["pid"] for j in jobs if j.result}) >= 1


class Hourly(Queue):
    name = "hourly"
    periodic = 3600
    periodic_catch_up = 1

    async def handle_item(self, item: Any) -> None:
        return None


class Later(SystemClock):
    """The wall clock moved ``offset`` seconds on: a worker that starts after downtime."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


async def test_a_new_database_has_no_missed_tick_and_restarts_repeat_none(
    location: str,
) -> None:
    for _ in range(3):
        async with Runtime(location, queues=[Hourly()]) as rt:
            jobs = await rt.list_jobs(queue="hourly")
    assert jobs == []  # the queue did not exist at the hour's tick: nothing was missed
    # Two hours later (as the clock says): the latest missed tick, caught up once.
    for _ in range(2):
        async with Runtime(location, queues=[Hourly()], clock=Later(7200)) as rt:
            jobs = await rt.list_jobs(queue="hourly")
    assert len(jobs) == 1
    assert tick_ms(jobs[0].id) == int((time.time() + 7200) // 3600 * 3600 * 1000)


async def test_no_burst_of_missed_ticks_after_downtime(location: str) -> None:
    class Fast(Hourly):
        name = "fast"
        periodic = 0.05
        periodic_catch_up = 0

    class CatchUp(Hourly):
        name = "catch_up"
        periodic = 0.05
        periodic_catch_up = 3

    async with Runtime(location, queues=[Fast(), CatchUp()]) as rt:
        pass  # the queues exist from here on
    before = time.time()
    await anyio.sleep(0.3)  # the downtime itself: six ticks go by with no worker
    async with Runtime(location, queues=[Fast(), CatchUp()]) as rt:
        caught_up = await rt.list_jobs(queue="catch_up")
        fast = await rt.list_jobs(queue="fast")
    # catch_up=3: the three latest missed ticks, at once; catch_up=0: none of them.
    assert len(caught_up) >= 3
    assert all(tick_ms(j.id) >= int(before * 1000) - 200 for j in fast)


async def test_cron_schedules(location: str) -> None:
    class EveryMinute(Hourly):
        name = "every_minute"
        periodic = "* * * * *"

    async with Runtime(location, queues=[EveryMinute()]) as rt:
        pass
    async with Runtime(location, queues=[EveryMinute()], clock=Later(120)) as rt:
        (job,) = await rt.list_jobs(queue="every_minute")  # the latest minute, caught up
    assert tick_ms(job.id) % 60_000 == 0
    assert time.time() * 1000 < tick_ms(job.id) <= (time.time() + 120) * 1000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("61 * * * *", "not a valid cron"),
        ("every day", "not a valid cron"),
        (0, "> 0 seconds"),
        (-5, "> 0 seconds"),
        (True, "cron expression or seconds"),
    ],
)
def test_bad_schedules_fail_at_definition(spec: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):

        class Bad(Hourly):
            name = "bad"
            periodic = spec


def test_a_periodic_payload_must_fit_the_queue_type(db_path: Path) -> None:
    import msgspec

    class Report(msgspec.Struct):
        day: str

    class Typed(Queue[Report]):
        name = "typed"
        periodic = 60
        periodic_payload: ClassVar[Any] = {"day": 5}

        async def handle_item(self, item: Report) -> None:
            return None

    with pytest.raises(ValidationError, match=r"\$\.day"):
        Runtime(db_path, queues=[Typed()])
