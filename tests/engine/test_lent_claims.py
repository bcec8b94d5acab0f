"""A write of enqueues, or of outcomes, claims for idle queues in its own transaction
(with_lent_claims, QueuePool.lend): the jobs start without a claim of their own, with
their history whole and in order; a write that fails leaves the queue claiming as
before, and one the store refuses with its claims is made without them. On a real
SQLite file; the store's writes are counted, and made to fail, by a subclass of the
real ones (failures the file itself cannot be made to give on cue)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
import pytest

from conveyor import Job, JobStatus, Queue, Runtime, StoreError, StoreUnavailable
from conveyor.store import Claimed, ClaimParams, EarlyClaims, Finish, NewJob, Transition
from conveyor.store.sqlite import SQLiteStore
from conveyor.store.sqlite._writes import SQLiteWrites

from ..conftest import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

S = JobStatus
T = TypeVar("T")


class Pair(Queue):
    name = "pair"
    worker_count = 2

    def __init__(self) -> None:
        self.ran: list[Any] = []

    async def handle_item(self, item: Any) -> None:
        self.ran.append(item)


class CountedWrites(SQLiteWrites):
    """The real SQLite writes, counting claims made on their own and with an insert;
    ``fail_next`` makes the next insert that claims fail before it writes anything."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store.file)
        store.writes = self
        self.claims = 0  # made
        self.claiming = 0  # being made
        self.inserts_claiming = 0
        self.finishes_claiming = 0
        self.fail_next = False
        self.refuse_finishes_claiming = False

    async def jobs_claim(self, params: ClaimParams) -> Claimed:
        self.claiming += 1
        try:
            return await super().jobs_claim(params)
        finally:
            self.claiming -= 1
            self.claims += 1  # once made: the claimer is idle again right after

    async def jobs_insert_claiming(
        self,
        jobs: Sequence[NewJob],
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition | Job], list[Claimed]]:
        if self.fail_next:
            self.fail_next = False
            raise StoreUnavailable("the disk went away (the test's)")
        self.inserts_claiming += 1
        return await super().jobs_insert_claiming(jobs, claims, early=early)

    async def jobs_finish_claiming(
        self,
        finishes: Sequence[Finish],
        now: float,
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition], list[Claimed]]:
        if self.refuse_finishes_claiming:
            raise StoreError("a row the test says cannot be read")
        self.finishes_claiming += 1
        return await super().jobs_finish_claiming(finishes, now, claims, early=early)


async def idle(writes: CountedWrites) -> None:
    """Until the pool's first claim (made at start, finding nothing) has returned, and
    no claim is being made."""
    await wait_until(lambda: writes.claims >= 1 and not writes.claiming)


async def test_an_enqueue_to_an_idle_queue_is_claimed_in_its_commit(db_path: Path) -> None:
    store, pair = SQLiteStore(db_path), Pair()
    writes = CountedWrites(store)
    async with Runtime(store, queues=[pair]) as rt:
        await idle(writes)
        claims = writes.claims
        job = await rt.enqueue("pair", "one")
        assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED
        assert writes.claims == claims  # no claim of its own
        assert writes.inserts_claiming == 1
        history = [entry.status for entry in await rt.history(job.id)]
        assert history == [S.QUEUED, S.RUNNING, S.COMPLETED]


async def test_a_claim_with_an_enqueue_takes_the_free_slots_and_the_rest_follow(
    db_path: Path,
) -> None:
    store, pair = SQLiteStore(db_path), Pair()
    writes = CountedWrites(store)
    async with Runtime(store, queues=[pair]) as rt:
        await idle(writes)
        jobs = await rt.enqueue_many("pair", list(range(5)))
        for job in jobs:
            assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED
        assert sorted(pair.ran) == list(range(5))
        assert writes.inserts_claiming == 1  # two slots: the others when those end,
        assert writes.finishes_claiming >= 1  # by the writes of their outcomes


async def test_a_failed_enqueue_leaves_its_queue_claiming(db_path: Path) -> None:
    store, pair = SQLiteStore(db_path), Pair()
    writes = CountedWrites(store)
    async with Runtime(store, queues=[pair]) as rt:
        await idle(writes)
        writes.fail_next = True
        with pytest.raises(StoreUnavailable):
            await rt.enqueue("pair", "lost")
        # Queued by another process meanwhile: only a claim of the queue's own finds it.
        async with Runtime(db_path, queues=[Pair()], workers=False) as producer:
            theirs = await producer.enqueue("pair", "theirs")
        assert (await rt.wait(theirs.id, timeout=10)).status is S.COMPLETED
        await idle(writes)
        again = await rt.enqueue("pair", "again")
        assert (await rt.wait(again.id, timeout=10)).status is S.COMPLETED
        assert pair.ran == ["theirs", "again"]
        assert writes.inserts_claiming == 1  # the last enqueue's: lent again


async def test_a_paused_queue_lends_no_claim(db_path: Path) -> None:
    store, pair = SQLiteStore(db_path), Pair()
    writes = CountedWrites(store)
    async with Runtime(store, queues=[pair]) as rt:
        await idle(writes)
        await rt.pause("pair")
        job = await rt.enqueue("pair", "held")
        assert writes.inserts_claiming == 0
        assert (await rt.job(job.id)).status is S.QUEUED
        await rt.resume("pair")
        assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED


@pytest.mark.parametrize("refused", [False, True])
async def test_outcomes_claim_for_the_slots_they_free(db_path: Path, refused: bool) -> None:
    """Jobs waiting (enqueued before the workers started): the outcomes of the first two
    claim the next in their own commit; refused with its claims, the write of the
    outcomes is made without them, and the queue's own claims take the rest."""
    async with Runtime(db_path, queues=[Pair()], workers=False) as producer:
        jobs = await producer.enqueue_many("pair", list(range(6)))
    store, pair = SQLiteStore(db_path), Pair()
    writes = CountedWrites(store)
    writes.refuse_finishes_claiming = refused
    async with Runtime(store, queues=[pair]) as rt:
        for job in jobs:
            assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED
            history = [entry.status for entry in await rt.history(job.id)]
            assert history == [S.QUEUED, S.RUNNING, S.COMPLETED]
        assert sorted(pair.ran) == list(range(6))
        if refused:
            assert writes.finishes_claiming == 0
            assert writes.claims >= 3  # two at a time, by the queue itself
        else:
            assert writes.finishes_claiming >= 1


class HeldCommits:
    """Stands between a SQLite store's durable writer and its sqlite3 connection to hold
    the next COMMIT until ``release`` is set, then fail it with the SQLite error code
    ``fail`` if set: a disk's slow or failed fsync, which a real disk cannot be made to
    give on cue. Everything else goes to the real connection."""

    def __init__(self, store: SQLiteStore, release: threading.Event) -> None:
        self.inner = store.file._writer
        assert self.inner is not None
        store.file._writer = self
        self.hold = False
        self.fail: int | None = None
        self.release = release

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        assert self.inner is not None
        return self.inner.run(lambda raw: fn(cast(sqlite3.Connection, _Held(raw, self))))

    async def close(self) -> None:
        assert self.inner is not None
        await self.inner.close()


class _Held:
    def __init__(self, raw: sqlite3.Connection, held: HeldCommits) -> None:
        self.raw = raw
        self.held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        held = self.held
        if sql == "COMMIT" and held.hold:
            held.hold = False
            assert held.release.wait(10)
            if held.fail is not None:
                error = sqlite3.OperationalError("the commit failed (the test's)")
                error.sqlite_errorcode = held.fail  # type: ignore[attr-defined]
                held.fail = None
                raise error
        return self.raw.execute(sql, *args)


class Watched(Queue):
    """One worker; each run says whether its job was in the file yet when it began
    (read on a connection of its own), then lets the held commit go on. The job "stay"
    runs until cancelled."""

    name = "watched"
    worker_count = 1

    def __init__(self, path: Path, release: threading.Event) -> None:
        self.path = path
        self.release = release
        self.began: list[tuple[Any, bool]] = []
        self.stopped = anyio.Event()

    async def handle_item(self, item: Any) -> None:
        other = sqlite3.connect(self.path)
        try:
            stored = other.execute("SELECT count(*) FROM jobs").fetchone()[0] > 0
        finally:
            other.close()
        self.began.append((item, stored))
        self.release.set()
        if item == "stay":
            try:
                await anyio.sleep_forever()
            finally:
                self.stopped.set()


@asynccontextmanager
async def held_commits(db_path: Path) -> AsyncIterator[tuple[Runtime, Watched, HeldCommits]]:
    """A runtime with the queue "watched" idle, its store's durable writer behind
    HeldCommits (holding nothing yet)."""
    store, release = SQLiteStore(db_path), threading.Event()
    watched = Watched(db_path, release)
    writes = CountedWrites(store)
    async with Runtime(store, queues=[watched]) as rt:
        await idle(writes)
        yield rt, watched, HeldCommits(store, release)


async def test_a_claimed_job_starts_while_its_commit_is_made(db_path: Path) -> None:
    """The job an enqueue claims for an idle queue begins as the enqueue's commit is
    being made durable, not after it: its handler finds it not yet in the file."""
    async with held_commits(db_path) as (rt, watched, held):
        held.hold = True
        job = await rt.enqueue("watched", "early")
        assert watched.began == [("early", False)]
        assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED
        history = [entry.status for entry in await rt.history(job.id)]
        assert history == [S.QUEUED, S.RUNNING, S.COMPLETED]


async def test_a_job_begun_before_a_commit_that_fails_stops_and_leaves_nothing(
    db_path: Path,
) -> None:
    """The commit fails after the job began: it was never stored, so its run stops and
    writes nothing, the enqueue raises, and the worker's slot is free again."""
    async with held_commits(db_path) as (rt, watched, held):
        held.hold, held.fail = True, sqlite3.SQLITE_IOERR
        with pytest.raises(StoreUnavailable):
            await rt.enqueue("watched", "stay")
        with anyio.fail_after(3):  # at once: not when its lease's renewal finds no job
            await watched.stopped.wait()
        assert await rt.list_jobs() == []
        after = await rt.enqueue("watched", "after")  # the slot it had is free again
        assert (await rt.wait(after.id, timeout=10)).status is S.COMPLETED
        assert [item for item, _ in watched.began] == ["stay", "after"]
        assert [job.id for job in await rt.list_jobs()] == [after.id]


async def test_a_job_begun_before_a_commit_that_fails_otherwise_runs_once_it_is_stored(
    db_path: Path,
) -> None:
    """A commit failing for a reason the store does not call passing: the enqueue's
    write is made again (the batcher's retry), the job begins again once it is in the
    file, and its record holds that run only."""
    async with held_commits(db_path) as (rt, watched, held):
        held.hold, held.fail = True, sqlite3.SQLITE_ERROR
        job = await rt.enqueue("watched", "twice")
        assert (await rt.wait(job.id, timeout=10)).status is S.COMPLETED
        assert [item for item, _ in watched.began] == ["twice", "twice"]
        history = [entry.status for entry in await rt.history(job.id)]
        assert history == [S.QUEUED, S.RUNNING, S.COMPLETED]
        assert [j.id for j in await rt.list_jobs()] == [job.id]
