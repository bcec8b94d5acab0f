"""The in-process event bus: filters, bounded buffers and the written overflow policy."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import anyio
import pytest

from conveyor import Event, EventStreamOverflow, JobStatus, Progress
from conveyor._bus import EventBus

pytestmark = pytest.mark.anyio

AT = datetime(2026, 1, 1, tzinfo=UTC)


def event(job: str, status: JobStatus, seq: int, current: int = 0, queue: str = "q") -> Event:
    return Event(
        seq=seq, job_id=job, queue=queue, status=status, progress=Progress(current=current), at=AT
    )


async def test_filters_by_queue_and_job() -> None:
    bus = EventBus()
    everything = bus.subscribe()
    only_a = bus.subscribe(queue="a")
    only_j2 = bus.subscribe(job_id="j2")
    bus.publish(event("j1", JobStatus.QUEUED, 1, queue="a"))
    bus.publish(event("j2", JobStatus.QUEUED, 2, queue="b"))
    for stream in (everything, only_a, only_j2):
        await stream.aclose()
    assert [e.seq async for e in everything] == [1, 2]
    assert [e.seq async for e in only_a] == [1]
    assert [e.seq async for e in only_j2] == [2]


async def test_a_full_buffer_coalesces_progress_and_keeps_transitions() -> None:
    bus = EventBus()
    stream = bus.subscribe(max_buffer=5)
    bus.publish(event("j1", JobStatus.RUNNING, 1))
    for i in range(1, 50):
        bus.publish(event("j1", JobStatus.RUNNING, 1, current=i), is_progress=True)
        bus.publish(event("j2", JobStatus.RUNNING, 2, current=i), is_progress=True)
    bus.publish(event("j1", JobStatus.COMPLETED, 3))
    await stream.aclose()
    got = [(e.job_id, e.status, e.progress.current) async for e in stream]
    assert got[0] == ("j1", JobStatus.RUNNING, 0)
    assert got[-1] == ("j1", JobStatus.COMPLETED, 0)
    assert len(got) <= 5
    # The latest report of each job survived the coalescing.
    assert ("j2", JobStatus.RUNNING, 49) in got


async def test_a_stream_full_of_transitions_is_dropped_with_an_error() -> None:
    bus = EventBus()
    slow = bus.subscribe(max_buffer=3)
    fast = bus.subscribe()
    for seq in range(1, 6):
        bus.publish(event(f"j{seq}", JobStatus.QUEUED, seq))
    assert slow not in bus._all  # unsubscribed: publishing no longer touches it
    got = [(await slow.__anext__()).seq for _ in range(3)]
    with pytest.raises(EventStreamOverflow, match="3"):
        await slow.__anext__()
    assert got == [1, 2, 3]  # what was buffered before the drop is still delivered
    await fast.aclose()
    assert [e.seq async for e in fast] == [1, 2, 3, 4, 5]


async def test_a_stream_dropped_in_the_middle_of_a_batch_gets_no_more_of_it() -> None:
    bus = EventBus()
    slow = bus.subscribe(max_buffer=3)
    overflows: list[None] = []
    slow.on_overflow = lambda: overflows.append(None)
    fast = bus.subscribe()
    bus.publish_all([event(f"j{seq}", JobStatus.QUEUED, seq) for seq in range(1, 7)])
    assert len(overflows) == 1  # told once, however much of the batch was left
    got = [(await slow.__anext__()).seq for _ in range(3)]
    with pytest.raises(EventStreamOverflow):
        await slow.__anext__()
    assert got == [1, 2, 3]
    await fast.aclose()
    assert [e.seq async for e in fast] == [1, 2, 3, 4, 5, 6]


async def test_publishing_never_waits_for_a_consumer() -> None:
    bus = EventBus()
    bus.subscribe(max_buffer=10)  # never read
    reader = bus.subscribe()
    for seq in range(10_000):  # publish is synchronous: it cannot wait on anyone
        bus.publish(event("j", JobStatus.RUNNING, seq), is_progress=True)
    assert (await reader.__anext__()).seq == 0


async def test_a_waiting_consumer_wakes_on_publish() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    got: list[int] = []

    async def consume() -> None:
        got.append((await stream.__anext__()).seq)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        bus.publish(event("j", JobStatus.QUEUED, 7))
    assert got == [7]


async def test_an_abandoned_stream_unsubscribes_itself() -> None:
    bus = EventBus()
    bus.subscribe(job_id="j")
    bus.subscribe()
    gc.collect()
    assert not bus.has_subscribers
    assert not bus.wants("j")
