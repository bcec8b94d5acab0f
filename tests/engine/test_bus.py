"""The in-process event bus: filters, bounded buffers and the written overflow policy."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import anyio
import pytest

from conveyor import Event, EventStreamOverflow, JobStatus, Progress
from conveyor._bus import EventBus, EventStream

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


class Batching:
    """A sink that records each batch it is handed and refuses the streams in ``refuse``."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[str]]] = []
        self.refuse: set[str] = set()

    def deliver(self, event: Event, streams: list[EventStream]) -> list[EventStream]:
        self.batches.append((event.seq, [s.sink_key for s in streams]))
        return [s for s in streams if s.sink_key in self.refuse]


def with_sink(bus: EventBus, sink: Batching, key: str, **filters: str) -> EventStream:
    stream = bus.subscribe(**filters)
    stream.sink, stream.sink_key = sink, key
    return stream


async def test_idle_streams_of_one_sink_get_each_event_in_one_batch() -> None:
    bus = EventBus()
    sink, other = Batching(), Batching()
    a, b = with_sink(bus, sink, "a"), with_sink(bus, sink, "b")
    c = with_sink(bus, other, "c", job_id="j1")
    only_q2 = with_sink(bus, sink, "q2", queue="q2")
    plain = bus.subscribe()
    bus.publish_all([event("j1", JobStatus.QUEUED, 1), event("j2", JobStatus.QUEUED, 2)])
    assert sorted((seq, sorted(keys)) for seq, keys in sink.batches) == [
        (1, ["a", "b"]),
        (2, ["a", "b"]),
    ]
    assert other.batches == [(1, ["c"])]
    for stream in (a, b, c, only_q2, plain):
        await stream.aclose()
    # What a sink took is not buffered as well; a stream without a sink buffers as ever.
    assert [e async for e in a] == []
    assert [e async for e in c] == []
    assert [e.seq async for e in plain] == [1, 2]


async def test_an_event_the_sink_refuses_is_buffered_and_later_ones_queue_behind_it() -> None:
    bus = EventBus()
    sink = Batching()
    slow, fast = with_sink(bus, sink, "slow"), with_sink(bus, sink, "fast")
    sink.refuse = {"slow"}
    bus.publish(event("j", JobStatus.RUNNING, 1))
    sink.refuse = set()  # the sink could take it again, but the buffer is not empty
    bus.publish(event("j", JobStatus.RUNNING, 1, current=1), is_progress=True)
    bus.publish(event("j", JobStatus.COMPLETED, 2))
    assert [sorted(keys) for _, keys in sink.batches] == [["fast", "slow"], ["fast"], ["fast"]]
    with anyio.fail_after(5):
        got = [(await slow.__anext__()) for _ in range(3)]
    assert [(e.seq, e.progress.current) for e in got] == [(1, 0), (1, 1), (2, 0)]
    # Drained: the sink gets the stream's events again.
    bus.publish(event("j2", JobStatus.QUEUED, 3))
    assert sorted(sink.batches[-1][1]) == ["fast", "slow"]
    await fast.aclose()


async def test_a_stream_skips_transitions_its_consumer_has_but_not_progress() -> None:
    bus = EventBus()
    stream = bus.subscribe()
    bus.publish(event("j", JobStatus.QUEUED, 4))  # buffered, then covered
    stream.skip_through(5)
    bus.publish(event("j", JobStatus.RUNNING, 5))
    bus.publish(event("j", JobStatus.RUNNING, 5, current=1), is_progress=True)
    bus.publish(event("j", JobStatus.COMPLETED, 6))
    stream.skip_through(2)  # never lowers the floor
    await stream.aclose()
    assert [(e.seq, e.progress.current) async for e in stream] == [(5, 1), (6, 0)]


async def test_a_report_repeating_the_first_event_is_not_delivered_again() -> None:
    """Reports published while a stream's first event (its job's state) is read are
    buffered; one that says exactly what that event says (its seq and progress) is not
    delivered again, one that says more is."""
    bus = EventBus()
    stream = bus.subscribe(job_id="j")
    read = anyio.Event()

    async def first() -> Event:
        await read.wait()
        return event("j", JobStatus.RUNNING, 5, current=1)

    stream.first = first
    bus.publish(event("j", JobStatus.RUNNING, 5, current=1), is_progress=True)
    bus.publish(event("j", JobStatus.RUNNING, 5, current=1), is_progress=True)
    bus.publish(event("j", JobStatus.RUNNING, 5, current=2), is_progress=True)
    bus.publish(event("j", JobStatus.RUNNING, 5, current=2), is_progress=True)
    bus.publish(event("j", JobStatus.COMPLETED, 6))
    read.set()
    await stream.aclose()
    got = [(e.status, e.progress.current) async for e in stream]
    assert got == [
        (JobStatus.RUNNING, 1),
        (JobStatus.RUNNING, 2),
        (JobStatus.RUNNING, 2),  # a repeat of a report, not of the first event: as sent
        (JobStatus.COMPLETED, 0),
    ]
