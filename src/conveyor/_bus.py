"""In-process fan-out of job events to any number of subscribers.

Publishing never waits: each subscriber has its own bounded buffer, so a slow consumer
costs only its own memory, up to its bound, and never stalls the scheduler or others.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Protocol

import anyio

from ._errors import EventStreamOverflow
from ._models import Event
from ._primitives import new_event
from ._states import JobStatus

DEFAULT_MAX_BUFFER = 10_000


class Sink(Protocol):
    """Writes an event for many streams at once, in the publisher's call: a transport's
    broadcast, so that a thousand subscribers cost one pass of writes, not a thousand
    task wake-ups. Each stream's ``sink_key`` says where its consumer is.
    """

    def deliver(self, event: Event, streams: list[EventStream]) -> list[EventStream]:
        """Write ``event`` now, without waiting, for each of ``streams`` that can take
        it; return those it did not write for (they buffer the event instead)."""
        ...


def _repeats(report: Event, said: Event) -> bool:
    """Whether a progress report says nothing that the event before it did not."""
    return (
        report.seq == said.seq and report.job_id == said.job_id and report.progress == said.progress
    )


class EventStream:
    """One subscriber's view of the bus: an async iterator of matching events.

    Overflow policy: the buffer holds at most ``max_buffer`` events. When it is full,
    buffered progress reports are coalesced to the latest one per job (transitions are
    kept, in order). If transitions alone fill it, the stream is dropped: iteration
    raises :class:`EventStreamOverflow` once the events before the drop were read.

    The stream is registered when created. Leave it with ``async with`` or ``aclose()``
    when you stop early; a stream that is no longer referenced unsubscribes itself.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_bus",
        "_closed",
        "_floor",
        "_overflowed",
        "_said",
        "_waiter",
        "first",
        "job_id",
        "max_buffer",
        "on_overflow",
        "queue",
        "sink",
        "sink_key",
        "statuses",
    )

    def __init__(
        self,
        bus: EventBus,
        queue: str | None,
        job_id: str | None,
        statuses: frozenset[JobStatus] | None,
        max_buffer: int,
    ) -> None:
        self._bus = bus
        self.queue = queue
        self.job_id = job_id
        self.statuses = statuses
        self.max_buffer = max_buffer
        self._buffer: deque[tuple[Event, bool]] = deque()
        self._waiter: anyio.Event | None = None
        self._closed = False
        self._overflowed = False
        # Optional fast path: while set and nothing is buffered, each event goes to the
        # sink (with every other stream that has the same sink, in one batch) instead of
        # the buffer. A websocket session uses it to write to an idle connection without
        # waking a task; it unsets it while its task holds an event, so none overtakes.
        self.sink: Sink | None = None
        self.sink_key: Any = None  # the sink's own: where this stream's consumer is
        # Called once when the stream is dropped for overflowing, for a consumer that may
        # be blocked elsewhere (on a stuck socket) rather than waiting on this stream.
        self.on_overflow: Callable[[], None] | None = None
        # Optional: read once, before the first event, for an event to yield before any
        # other (a job's current state). Until it is read, events wait in the buffer;
        # transitions it already covers (seq <= its seq) are then skipped.
        self.first: Callable[[], Awaitable[Event | None]] | None = None
        self._floor = 0
        self._said: Event | None = None  # that first event, until another is delivered

    def _accept(self, event: Event, is_progress: bool) -> Sink | None:
        """Take an event: buffer it, or return the sink that is to write it (the bus
        batches the streams of one sink); None as well for an event this one filters out."""
        if self._closed:  # closed while a batch was being published to it
            return None
        if self.queue is not None and event.queue != self.queue:
            return None
        if self.statuses is not None and event.status not in self.statuses:
            return None
        if not is_progress and event.seq <= self._floor:
            return None  # covered by the first event, or sent already (skip_through)
        sink = self.sink
        if sink is not None and self.first is None and not self._buffer:
            return sink
        self._append(event, is_progress)
        return None

    def _append(self, event: Event, is_progress: bool) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self.max_buffer:
            self._coalesce()
            if len(self._buffer) >= self.max_buffer:
                self._overflowed = True
                self._close()
                if self.on_overflow is not None:
                    self.on_overflow()
                return
        self._buffer.append((event, is_progress))
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def skip_through(self, seq: int) -> None:
        """Deliver no transition with a seq up to ``seq`` from now on (buffered ones
        included): its consumer has them already, e.g. from a replay of the store."""
        self._floor = max(self._floor, seq)

    def _coalesce(self) -> None:
        """Drop every buffered progress report that a later one for its job supersedes."""
        seen: set[str] = set()
        kept: list[tuple[Event, bool]] = []
        for event, is_progress in reversed(self._buffer):
            if is_progress:
                if event.job_id in seen:
                    continue
                seen.add(event.job_id)
            kept.append((event, is_progress))
        kept.reverse()
        self._buffer = deque(kept)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            if self._waiter is not None:
                self._waiter.set()
                self._waiter = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        return (await self._next_item())[0]

    async def items(self) -> AsyncIterator[tuple[Event, bool]]:
        """Like iterating the stream, with each event paired with whether it is a
        progress report (True) or a transition (False): for forwarders that resume by
        seq, since a progress report repeats its job's latest transition's seq."""
        while True:
            try:
                yield await self._next_item()
            except StopAsyncIteration:
                return

    async def _next_item(self) -> tuple[Event, bool]:
        if self.first is not None:
            try:
                event = await self.first()
            finally:
                self.first = None
            if event is not None:
                self._floor = event.seq
                if self.statuses is None or event.status in self.statuses:
                    self._said = event
                    return event, False
        while True:
            while not self._buffer:
                if self._closed:
                    if self._overflowed:
                        raise EventStreamOverflow(
                            f"subscriber fell more than {self.max_buffer} transitions behind"
                        )
                    raise StopAsyncIteration
                self._waiter = waiter = new_event()
                await waiter.wait()
            event, is_progress = self._buffer.popleft()
            if is_progress and self._said is not None and _repeats(event, self._said):
                continue  # published while the first event was read, and saying the same
            if is_progress or event.seq > self._floor:
                self._said = None
                return event, is_progress

    async def aclose(self) -> None:
        """Unsubscribe; iteration then ends after the events already buffered."""
        self._close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()


class EventBus:
    """Routes each published event to the streams whose filters match it.

    Streams filtered by job id are indexed by it, so thousands of ``wait()`` calls do not
    make every publish scan thousands of streams.
    """

    def __init__(self) -> None:
        self._all: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._by_job: dict[str, weakref.WeakSet[EventStream]] = {}
        # Streams ever opened: a reader that skipped rows nobody wanted when it started
        # compares this before and after, to learn whether someone has wanted them since.
        self.subscriptions = 0

    def subscribe(
        self,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        statuses: Iterable[JobStatus] | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> EventStream:
        wanted = None if statuses is None else frozenset(statuses)
        stream = EventStream(self, queue, job_id, wanted, max_buffer)
        self.subscriptions += 1
        if job_id is None:
            self._all.add(stream)
        else:
            self._by_job.setdefault(job_id, weakref.WeakSet()).add(stream)
            # A stream dropped without aclose() leaves its WeakSet; forget the empty key.
            weakref.finalize(stream, self._prune, job_id)
        return stream

    def _prune(self, job_id: str) -> None:
        streams = self._by_job.get(job_id)
        # Iterate rather than len(): this runs before the WeakSet drops the dead entry,
        # but iteration already skips it.
        if streams is not None and not any(True for _ in streams):
            del self._by_job[job_id]

    def _remove(self, stream: EventStream) -> None:
        if stream.job_id is None:
            self._all.discard(stream)
        else:
            streams = self._by_job.get(stream.job_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._by_job[stream.job_id]

    @property
    def has_subscribers(self) -> bool:
        return bool(self._all) or bool(self._by_job)

    def wants(self, job_id: str) -> bool:
        """Whether any stream would receive an event of this job (to skip building it)."""
        return bool(self._all) or job_id in self._by_job

    def publish(self, event: Event, *, is_progress: bool = False) -> None:
        self.publish_all((event,), is_progress=is_progress)

    def publish_all(self, events: Iterable[Event], *, is_progress: bool = False) -> None:
        """Publish events in order. The unfiltered streams are listed once per call, not
        once per event: copying a WeakSet is most of the cost of a publish. Streams with a
        sink are batched per event, one batch per sink, and each batch written before the
        next event: a stream that the sink refuses buffers the event, and the next events
        then queue behind it, so each stream's order holds."""
        everyone = list(self._all)
        by_job = self._by_job
        for event in events:
            # Nearly always one sink (the websocket server's): kept apart from the rest.
            sink: Sink | None = None
            batch: list[EventStream] = []
            more: dict[Sink, list[EventStream]] | None = None
            watching = by_job.get(event.job_id)
            for stream in everyone if not watching else [*everyone, *watching]:
                taker = stream._accept(event, is_progress)
                if taker is None:
                    continue
                if taker is sink:
                    batch.append(stream)
                elif sink is None:
                    sink = taker
                    batch.append(stream)
                else:
                    more = more or {}
                    more.setdefault(taker, []).append(stream)
            if sink is not None:
                for stream in sink.deliver(event, batch):
                    stream._append(event, is_progress)
                for taker, theirs in (more or {}).items():
                    for stream in taker.deliver(event, theirs):
                        stream._append(event, is_progress)
