"""What a PostgreSQL notification tells the other runtimes: that history was written, and
on which queues jobs were queued, so that the runtimes working those queues claim at once
instead of reading the history first. Real stores on the real server, one writing and
one listening; the payload's own rules (its size bound, what a reader tolerates) beside."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

import anyio
import asyncpg
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import JobStatus
from conveyor.store import Store
from conveyor.store.postgres import split_schema
from conveyor.store.postgres._history import MAX_QUEUE_LIST, notification, queues_of

from .test_store_contract import NOW, new, opened

pytestmark = pytest.mark.timeout(60)
LONG = "q" * 190  # a queue name of 190 bytes: 40 of them are past MAX_QUEUE_LIST


@pytest.fixture
def store_kind() -> str:
    return "postgres"


class Heard:
    """What a listening store reported through CommitWatch.watch."""

    def __init__(self) -> None:
        self.wakes = 0
        self.queues: set[str] = set()
        self.lists: list[list[str]] = []
        self.changed = anyio.Event()

    def wake(self) -> None:
        self.wakes += 1
        self.changed.set()

    def queued(self, queues: Collection[str]) -> None:
        self.lists.append(sorted(queues))
        self.queues.update(queues)
        self.changed.set()

    async def until(self, done: bool) -> None:
        """Wait for the next report (the caller loops on its condition)."""
        if not done:
            await self.changed.wait()
            self.changed = anyio.Event()


@pytest.fixture
async def listening(location: str) -> AsyncIterator[tuple[Store, Heard]]:
    async with opened(location, "me") as store:
        heard = Heard()
        store.commits.watch(heard.wake, heard.queued)
        yield store, heard


@pytest.fixture
async def writer(location: str) -> AsyncIterator[Store]:
    async with opened(location, "them") as other:
        yield other


@pytest.mark.anyio
async def test_the_queues_jobs_were_queued_on_are_named(
    listening: tuple[Store, Heard], writer: Store
) -> None:
    _, heard = listening
    await writer.writes.jobs_insert(
        [
            new(1, queue="a"),
            new(2, queue="b"),
            new(3, queue="later", status=JobStatus.SCHEDULED, scheduled_at=NOW + 60),
        ]
    )
    with anyio.fail_after(10):
        while heard.queues != {"a", "b"}:
            await heard.until(heard.queues == {"a", "b"})
    assert heard.wakes >= 1  # and the history read is asked for too
    assert "later" not in heard.queues  # nothing to claim there yet


@pytest.mark.anyio
async def test_an_own_write_wakes_nobody(listening: tuple[Store, Heard], writer: Store) -> None:
    store, heard = listening
    await store.writes.jobs_insert([new(1, queue="mine")])
    await writer.writes.jobs_insert([new(2, queue="theirs")])  # heard after the own one
    with anyio.fail_after(10):
        while "theirs" not in heard.queues:
            await heard.until("theirs" in heard.queues)
    assert "mine" not in heard.queues


@pytest.mark.anyio
async def test_a_list_too_long_for_a_payload_is_left_out(
    listening: tuple[Store, Heard], writer: Store
) -> None:
    _, heard = listening
    await writer.writes.jobs_insert([new(n, queue=f"{LONG}{n:02d}") for n in range(40)])
    with anyio.fail_after(10):
        while heard.wakes == 0:
            await heard.until(heard.wakes > 0)
    assert heard.lists == []  # the history read finds the jobs instead


@pytest.mark.anyio
@pytest.mark.parametrize("queues", [["t"], [f"{LONG}{n:02d}" for n in range(40)]])
async def test_a_transactional_enqueue_names_its_queues_when_it_commits(
    location: str, listening: tuple[Store, Heard], writer: Store, queues: list[str]
) -> None:
    """The application's transaction NOTIFYs inside itself (see change_statement): a
    list past the bound must not fail that transaction (PostgreSQL refuses a payload of
    8,000 bytes or more), only be left out."""
    store, heard = listening
    conn = await asyncpg.connect(split_schema(location)[0])
    try:
        async with conn.transaction():
            await writer.writes.jobs_insert(
                [new(n, queue=q) for n, q in enumerate(queues)], connection=conn
            )
    finally:
        await conn.close()
    with anyio.fail_after(10):
        while heard.wakes == 0 or (len(queues) == 1 and not heard.queues):
            await heard.until(False)
    assert heard.queues == ({"t"} if len(queues) == 1 else set())
    assert await store.reads.job_get("job0000") is not None  # committed whole


@given(st.lists(st.text(min_size=1, max_size=60), max_size=80), st.text(max_size=40))
def test_a_payload_reads_back_as_written_or_without_its_list(
    queues: list[str], origin: str
) -> None:
    payload = notification(origin.replace("\n", " "), set(queues))
    assert len(payload.encode()) < 8000  # what PostgreSQL accepts
    read_origin, named = queues_of(payload)
    assert read_origin == origin.replace("\n", " ")
    if named:
        assert named == sorted(set(queues))
    else:
        assert not queues or len(msgspec.json.encode(sorted(set(queues)))) >= MAX_QUEUE_LIST


@pytest.mark.parametrize("payload", ["origin\nnot json", "origin\n{}", "origin\n[1, 2]", "o\n"])
def test_a_payload_in_another_form_names_no_queues(payload: str) -> None:
    assert queues_of(payload) == (payload.partition("\n")[0], [])


@pytest.mark.anyio
async def test_a_store_closing_sends_what_is_due(
    location: str, listening: tuple[Store, Heard]
) -> None:
    """The notification follows its write, which does not wait for it: closing the store
    right after a write still sends it."""
    _, heard = listening
    async with opened(location, "leaving") as leaving:
        await leaving.writes.jobs_insert([new(1, queue="last")])
    with anyio.fail_after(10):
        while "last" not in heard.queues:
            await heard.until("last" in heard.queues)
