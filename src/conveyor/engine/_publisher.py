"""Transitions to the bus, in seq order, whichever process wrote them.

So every subscriber sees one ordered stream, and a client that resumes after seq N misses
nothing. The store tail reads the history back and publishes it; local writes kick it at
once, so that costs a read, not a poll interval. Where the store numbers a write's rows
right after every row committed before it (SQLite: one writer at a time), the hot path's
writes are published from what they returned when they follow the last seq published
with no gap — no read at all; a gap (another process's rows, or a write whose rows only
the tail reads) leaves the rest to the tail. Waking workers and stopping cancelled
handlers do not wait for either: the engine does them right after the local commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import anyio
from anyio.abc import TaskStatus

from .._bus import EventBus
from .._clock import Clock, to_datetime
from .._errors import StoreError
from .._logging import get_logger
from .._models import NO_PROGRESS, Event, Progress
from .._primitives import new_event
from ..store import Store, Transition
from ._executor import RunningJob
from ._relay import ProgressRelay

log = get_logger("conveyor.engine")

TAIL_BATCH = 1000  # history rows read per tail query


def transition_event(t: Transition, progress: Progress | None = None) -> Event:
    """The event of a committed transition; ``progress`` defaults to the stored one."""
    return Event(
        seq=t.seq,
        job_id=t.job_id,
        queue=t.queue,
        status=t.status,
        progress=progress or t.progress or NO_PROGRESS,
        at=to_datetime(t.at),
        message=t.message,
    )


class Publisher:
    """One runtime's publishing of transitions (see the module docstring). ``seq`` is
    the last one published or passed over; ``running`` are this runtime's runs, whose
    events carry their live progress. Other runtimes' rows the tail read go to
    ``on_foreign``; ``on_queued`` hears of the queues a store's notification says jobs
    were queued on (PostgreSQL), before the tail reads them."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        running: Mapping[str, RunningJob],
        *,
        owner: str,
        on_foreign: Callable[[list[Transition]], None],
        on_queued: Callable[[Iterable[str]], None],
        poll_interval: float,
        progress_interval: float,
    ) -> None:
        self.store = store
        self.bus = bus
        self.running = running
        self.owner = owner
        self.on_foreign = on_foreign
        self.on_queued = on_queued
        self.poll_interval = poll_interval
        self.seq = 0
        self._kick = anyio.Event()
        # Whether own writes may be published from what they returned (see committed).
        self._as_returned = store.commits.numbers_writes_in_commit_order
        self._lock = anyio.Lock(fast_acquire=True)
        self.relay = ProgressRelay(
            store,
            bus,
            clock,
            owner=owner,
            interval=progress_interval,
            published_until=lambda: self.seq,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The tail: publish transitions in seq order and hand on other processes' ones.

        Woken at once by this runtime's own commits, and by other processes' commits
        where the store can notify (PostgreSQL's LISTEN). SQLite cannot, so it also checks
        every ``poll_interval`` — a cheap in-memory look at the file's change counter,
        and a read only when it moved. Other processes' progress reports follow through
        the relay (see _relay.py). Started (``tg.start``) once it knows where the
        history ends, so no commit of this runtime can fall before that point unpublished.
        """
        self.seq = await self.store.reads.last_seq()  # what was committed before: not news
        self.store.commits.watch(lambda: self._kick.set(), self.on_queued)
        task_status.started()
        while True:
            with anyio.move_on_after(min(self.poll_interval, self.relay.wait())):
                await self._kick.wait()
            kicked = self._kick.is_set()
            self._kick = new_event()
            try:
                if await self.store.commits.changed():
                    self.relay.store_changed()
                    await self.tail()
                elif kicked:
                    await self.tail()
                await self.relay.relay_if_due()
            except StoreError as exc:
                log.warning("reading the job history failed, will retry: %s", exc)

    def committed(self, transitions: Sequence[Transition], *, as_written: bool) -> None:
        """A local write committed ``transitions``: publish them now, or kick the tail.
        ``as_written``: they are every history row the write appended, with the progress
        they were written with (see CommittingWrites)."""
        if not (
            as_written
            and self._as_returned
            # No bigger burst than a tail page: subscribers' buffers are sized for those
            # (a bulk enqueue's rows are published a page per read, by the tail).
            and len(transitions) <= TAIL_BATCH
            and self._publish_in_order(transitions)
        ):
            self._kick.set()

    def _publish_in_order(self, transitions: Sequence[Transition]) -> bool:
        """Publish the transitions that follow the last seq published with no gap;
        whether that was all of them (else the tail publishes the rest)."""
        last = self.seq
        stale = 0  # leading ones the tail read and published meanwhile
        for t in transitions:
            if t.seq <= last:
                stale += 1
            elif t.seq == last + 1:
                last = t.seq
            else:
                break
        published = transitions[stale : stale + last - self.seq]
        if published:
            self.seq = last
            self._publish(published)
        return stale + len(published) == len(transitions)

    def _publish(self, transitions: Iterable[Transition]) -> None:
        bus = self.bus
        events: list[Event] = []
        for t in transitions:
            run = self.running.get(t.job_id)
            progress = None
            if run is not None:
                run.seq = t.seq
                run.announced = True
                progress = run.ctx.progress
            if bus.wants(t.job_id):
                events.append(transition_event(t, progress))
        bus.publish_all(events)

    async def tail(self) -> None:
        """Read the history past ``seq`` and publish it, until caught up (also the stop's
        last step); StoreError if a read fails (the next call goes on from there)."""
        async with self._lock:  # the tail loop and the stop's last call: never both
            await self._until_caught_up()

    async def _until_caught_up(self) -> None:
        while True:
            # Every row is read back only when someone listens; else only others' rows
            # that this runtime acts on (ACTED_ON: in a fleet, one row per job, not three).
            subscriptions, everything = self.bus.subscriptions, self.bus.has_subscribers
            start = self.seq
            transitions, seq = await self.store.reads.history_after(
                start, TAIL_BATCH, everything=everything
            )
            if not everything and self.bus.subscriptions != subscriptions:
                # Someone subscribed during the read, after looking the job up (wait()
                # does): a row skipped may be the very event it waits for.
                continue
            full = len(transitions) == TAIL_BATCH
            if self.seq != start:  # own writes were published during the read
                transitions = [t for t in transitions if t.seq > self.seq]
                seq = max(seq, self.seq)
            self.seq = seq
            self._publish(transitions)
            foreign = [t for t in transitions if t.origin != self.owner]
            if foreign:
                self.on_foreign(foreign)
            if not full:
                return
