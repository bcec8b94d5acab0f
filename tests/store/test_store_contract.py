"""The Store protocol, as the engine relies on it, checked against both stores: a real
SQLite file, and a real PostgreSQL schema both directly and through a real PgBouncer in
transaction mode (the pooler production databases often sit behind). Every test here
runs once per store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from conveyor import InvalidTransition, JobNotFound, JobStatus, Progress
from conveyor.store import (
    ClaimParams,
    Finish,
    FinishedCount,
    JobMatch,
    ListParams,
    NewJob,
    PausedQueue,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    Store,
    Transition,
    store_at,
)

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0
S = JobStatus


@pytest.fixture(params=["sqlite", "sqlite-threaded", "postgres", "pgbouncer"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def opened(location: str, origin: str) -> AsyncIterator[Store]:
    store = store_at(location)
    await store.open(origin)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(location: str) -> AsyncIterator[Store]:
    async with opened(location, "me") as store:
        yield store


@pytest.fixture
async def other(location: str, store: Store) -> AsyncIterator[Store]:
    """A second runtime's connection to the same store."""
    async with opened(location, "them") as other:
        yield other


def new(n: int, *, queue: str = "q", status: JobStatus = S.QUEUED, **fields: object) -> NewJob:
    return NewJob(
        id=f"job{n:04d}",
        queue=queue,
        status=status,
        payload=b'{"n":%d}' % n,
        created_at=NOW + n,
        **fields,  # type: ignore[arg-type]
    )


def claim(
    limit: int = 10, *, token: str = "t1", owner: str = "w1", queue: str = "q"
) -> ClaimParams:
    return ClaimParams(
        queue=queue, limit=limit, owner=owner, token=token, now=NOW, lease_expires_at=NOW + 30
    )


def done(
    job_id: str, token: str = "t1", status: JobStatus = S.COMPLETED, **fields: object
) -> Finish:
    fields.setdefault("progress", Progress())
    return Finish(job_id=job_id, token=token, status=status, **fields)  # type: ignore[arg-type]


def statuses(transitions: list[Transition]) -> list[tuple[str, JobStatus]]:
    return [(t.job_id, t.status) for t in transitions]


def increasing(transitions: list[Transition]) -> bool:
    """Seqs grow, none repeated (not consecutive: on PostgreSQL they carry the writing
    transaction's id)."""
    seqs = [t.seq for t in transitions]
    return seqs == sorted(set(seqs))


async def test_insert_then_claim_by_priority_then_age(store: Store) -> None:
    inserted = await store.writes.jobs_insert(
        [new(1), new(2, priority=5), new(3), new(4, queue="other")]
    )
    assert all(isinstance(t, Transition) for t in inserted)
    assert increasing(inserted)  # type: ignore[arg-type]
    jobs, transitions = await store.writes.jobs_claim(claim(2))
    assert [j.id for j in jobs] == ["job0002", "job0001"]
    assert all(j.status is S.RUNNING and j.attempts == 1 for j in jobs)
    assert statuses(transitions) == [("job0002", S.RUNNING), ("job0001", S.RUNNING)]
    assert transitions[0].seq > inserted[-1].seq  # type: ignore[union-attr]
    rest, _ = await store.writes.jobs_claim(claim(10, token="t2"))
    assert [j.id for j in rest] == ["job0003"]  # not the other queue's
    assert await store.writes.jobs_claim(claim(10, token="t3")) == ([], [])
    assert await store.reads.queue_counts() == {"q": {S.RUNNING: 3}, "other": {S.QUEUED: 1}}


async def test_an_insert_claims_in_its_own_transaction(store: Store, other: Store) -> None:
    """jobs_insert_claiming: what each claim takes once the insert's jobs are in, by
    priority then age, older jobs among them; the claims' rows follow the insert's, and
    the history holds both (one commit, read back by another process as a whole)."""
    await store.writes.jobs_insert([new(1), new(2, queue="b")])
    results, claimed = await store.writes.jobs_insert_claiming(
        [new(3, priority=5), new(4), new(5), new(6, queue="b"), new(7, status=S.SCHEDULED)],
        [claim(3, token="ta"), claim(10, token="tb", queue="b")],
    )
    assert all(isinstance(r, Transition) for r in results)
    assert statuses(results) == [  # type: ignore[arg-type]
        (f"job000{n}", S.SCHEDULED if n == 7 else S.QUEUED) for n in range(3, 8)
    ]
    (a_jobs, a_rows), (b_jobs, b_rows) = claimed
    assert [j.id for j in a_jobs] == ["job0003", "job0001", "job0004"]
    assert all(j.status is S.RUNNING and j.attempts == 1 for j in a_jobs)
    assert statuses(a_rows) == [(j.id, S.RUNNING) for j in a_jobs]
    assert [j.id for j in b_jobs] == ["job0002", "job0006"]
    assert increasing([*results, *a_rows, *b_rows])  # type: ignore[list-item]
    assert await other.reads.queue_counts() == {
        "q": {S.RUNNING: 3, S.QUEUED: 1, S.SCHEDULED: 1},
        "b": {S.RUNNING: 2},
    }
    history, _ = await other.reads.history_after(0, 100, everything=True)
    assert statuses(history)[-10:] == [*statuses(results), *statuses(a_rows), *statuses(b_rows)]  # type: ignore[arg-type]
    results, [(rest, _)] = await store.writes.jobs_insert_claiming([], [claim(9, token="tc")])
    assert results == []
    assert [j.id for j in rest] == ["job0005"]  # no jobs: a claim alone


async def test_outcomes_claim_in_their_own_transaction(store: Store, other: Store) -> None:
    """jobs_finish_claiming: the outcomes as jobs_finish writes them (fenced by token, with
    their progress), then each claim; the claims' rows follow the outcomes'."""
    await store.writes.jobs_insert([new(n) for n in range(1, 6)])
    await store.writes.jobs_claim(claim(2))
    finished, [(jobs, rows)] = await store.writes.jobs_finish_claiming(
        [
            done("job0001", progress=Progress(current=3)),
            done("job0002", token="stale"),  # fenced: writes nothing
        ],
        NOW + 1,
        [claim(2, token="t2")],
    )
    assert statuses(finished) == [("job0001", S.COMPLETED)]
    assert finished[0].progress == Progress(current=3)
    assert [j.id for j in jobs] == ["job0003", "job0004"]
    assert statuses(rows) == [("job0003", S.RUNNING), ("job0004", S.RUNNING)]
    assert increasing([*finished, *rows])
    assert await other.reads.queue_counts() == {"q": {S.COMPLETED: 1, S.RUNNING: 3, S.QUEUED: 1}}
    finished, [(rest, _)] = await store.writes.jobs_finish_claiming([], NOW + 2, [claim(9)])
    assert finished == []
    assert [j.id for j in rest] == ["job0005"]  # no outcomes: a claim alone


async def test_a_store_says_whether_its_writes_go_one_at_a_time(
    store: Store, store_kind: str
) -> None:
    """SQLite's writes share one lock (so the engine claims inside the outcomes' write);
    PostgreSQL's run side by side on a pool of connections (so it claims beside it)."""
    assert store.writes.one_at_a_time is store_kind.startswith("sqlite")


async def test_payloads_round_trip_exactly(store: Store) -> None:
    payload = b'{"text":"caf\\u00e9 \\u0000 \xe2\x9c\x93","big":12345678901234567890,"f":0.1}'
    await store.writes.jobs_insert(
        [NewJob(id="j", queue="q", status=S.QUEUED, payload=payload, created_at=NOW)]
    )
    job = await store.reads.job_get("j")
    assert job is not None
    assert job.payload == {"text": "café \x00 ✓", "big": 12345678901234567890, "f": 0.1}


async def test_a_unique_key_holds_one_unfinished_job(store: Store) -> None:
    first, twin, free = await store.writes.jobs_insert(
        [new(1, unique_key="k"), new(2, unique_key="k"), new(3, unique_key="k", queue="other")]
    )
    assert isinstance(first, Transition)
    assert isinstance(free, Transition)
    assert not isinstance(twin, Transition)
    assert twin.id == "job0001"
    (again,) = await store.writes.jobs_insert([new(4, unique_key="k")])
    assert not isinstance(again, Transition)
    assert again.id == "job0001"
    await store.writes.jobs_claim(claim())
    await store.writes.jobs_finish([done("job0001")], NOW)
    (after,) = await store.writes.jobs_insert([new(5, unique_key="k")])
    assert isinstance(after, Transition)  # the key is free once its job ended


async def test_a_derived_id_that_exists_keeps_that_job(store: Store) -> None:
    await store.writes.jobs_insert([new(1, derived_id=True)])
    (again,) = await store.writes.jobs_insert([new(1, derived_id=True)])
    assert not isinstance(again, Transition)
    assert again.id == "job0001"
    assert len(await store.reads.jobs_list(ListParams())) == 1


async def test_finishes_are_fenced_by_the_lease_token(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3)])
    await store.writes.jobs_claim(claim())
    assert await store.writes.jobs_finish([done("job0001", token="stale")], NOW) == []
    result = b'{"ok":true}'
    finished = await store.writes.jobs_finish(
        [
            done("job0001", result=result, progress=Progress(current=3, total=3)),
            done("job0002", status=S.FAILED, error="boom", traceback="Traceback..."),
            done("job0003", status=S.SCHEDULED, scheduled_at=NOW + 60, message="retry"),
        ],
        NOW + 1,
    )
    assert sorted(statuses(finished)) == [
        ("job0001", S.COMPLETED),
        ("job0002", S.FAILED),
        ("job0003", S.SCHEDULED),
    ]
    assert {t.job_id: t.progress for t in finished}["job0001"] == Progress(current=3, total=3)
    assert increasing(finished)
    one, two, three = [await store.reads.job_get(f"job000{n}") for n in (1, 2, 3)]
    assert one is not None
    assert one.result == {"ok": True}
    assert one.finished_at is not None
    assert two is not None
    assert two.error == "boom"
    assert two.traceback == "Traceback..."
    assert three is not None
    assert three.finished_at is None
    assert three.scheduled_at is not None
    assert await store.reads.next_due() == NOW + 60
    assert await store.writes.jobs_finish([done("job0001")], NOW) == []  # the lease is gone


async def test_progress_is_fenced_and_kept(store: Store) -> None:
    await store.writes.jobs_insert([new(1)])
    await store.writes.jobs_claim(claim())
    await store.writes.jobs_progress([ProgressWrite("job0001", "stale", Progress(current=9))], NOW)
    await store.writes.jobs_progress(
        [ProgressWrite("job0001", "t1", Progress(current=2, total=4))], NOW
    )
    job = await store.reads.job_get("job0001")
    assert job is not None
    assert job.progress == Progress(current=2, total=4)


async def test_running_progress_of_other_owners(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3)])
    _, (running,) = await store.writes.jobs_claim(claim(1, owner="w1"))
    await store.writes.jobs_claim(claim(1, owner="w2", token="t2"))
    await store.writes.jobs_progress(
        [ProgressWrite("job0001", "t1", Progress(current=2, total=4))], NOW
    )
    rows = await store.reads.jobs_running_progress("w2")
    assert [(r.job_id, r.queue, r.seq, r.progress) for r in rows] == [
        ("job0001", "q", running.seq, Progress(current=2, total=4))
    ]
    assert [r.job_id for r in await store.reads.jobs_running_progress("w1")] == ["job0002"]
    assert [r.progress for r in await store.reads.jobs_running_progress("w1")] == [None]


async def test_cancel_waiting_running_and_ended_jobs(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3, status=S.SCHEDULED, scheduled_at=NOW)])
    await store.writes.jobs_claim(claim(1))  # job0001 runs
    job, transitions = await store.writes.job_request_cancel("job0001", "q", NOW)
    assert job.status is S.CANCELLING
    assert statuses(transitions) == [("job0001", S.CANCELLING)]
    job, transitions = await store.writes.job_request_cancel("job0002", None, NOW)
    assert job.status is S.CANCELLED
    assert job.finished_at is not None
    job, _ = await store.writes.job_request_cancel("job0003", None, NOW)
    assert job.status is S.CANCELLED
    assert (await store.writes.job_request_cancel("job0002", None, NOW))[
        1
    ] == []  # ended: no change
    with pytest.raises(JobNotFound):
        await store.writes.job_request_cancel("job0001", "other", NOW)
    with pytest.raises(JobNotFound):
        await store.writes.job_request_cancel("nope", None, NOW)
    # A run put back while its cancellation was pending ends cancelled.
    (put_back,) = await store.writes.jobs_finish([done("job0001", status=S.QUEUED)], NOW)
    assert put_back.status is S.CANCELLED
    assert put_back.message == "cancelled"


async def test_rerun_only_ended_jobs(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2)])
    await store.writes.jobs_claim(claim())
    await store.writes.jobs_finish([done("job0001", status=S.FAILED, error="boom")], NOW)
    job, transitions = await store.writes.job_rerun("job0001", "ops", NOW + 1)
    assert job.status is S.QUEUED
    assert job.attempts == 0
    assert job.error is None
    assert transitions[0].message == "rerun by ops"
    with pytest.raises(InvalidTransition, match="job0002 is running"):
        await store.writes.job_rerun("job0002", None, NOW)
    with pytest.raises(JobNotFound):
        await store.writes.job_rerun("nope", None, NOW)


async def test_leases_renew_rescue_and_release(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3)])
    await store.writes.jobs_claim(claim(1, owner="lost"))
    await store.writes.jobs_claim(claim(2, owner="alive", token="t2"))
    assert await store.reads.lease_owners() == {"lost", "alive"}
    renewed = await store.writes.jobs_heartbeat("alive", ["job0002", "job0001", "nope"], NOW + 100)
    assert renewed == {"job0002"}  # only the named jobs it holds
    assert await store.writes.jobs_heartbeat("alive", ["job0003"], NOW + 100) == {"job0003"}
    rescue = RescueParams(now=NOW + 31, expired_before=NOW + 31, max_orphanings=2)
    (requeued,) = await store.writes.jobs_rescue(rescue)
    assert requeued.job_id == "job0001"
    assert requeued.status is S.QUEUED
    assert requeued.message == "requeued: worker lost (lease expired; 1 of 2)"
    assert (await store.reads.job_get("job0001")).attempts == 0  # type: ignore[union-attr]
    await store.writes.jobs_claim(claim(1, owner="lost", token="t3"))
    (failed,) = await store.writes.jobs_rescue(
        RescueParams(now=NOW, expired_before=None, dead_owners=["lost"], max_orphanings=2)
    )
    assert failed.status is S.FAILED
    job = await store.reads.job_get("job0001")
    assert job is not None
    assert job.error == "worker lost (2 times)"
    assert job.attempts == 1  # the run that failed counts; the lost one before it did not
    await store.writes.jobs_progress(
        [ProgressWrite("job0002", "t2", Progress(current=8, total=13))], NOW
    )
    released = await store.writes.jobs_release("alive", NOW)
    assert sorted(statuses(released)) == [("job0002", S.QUEUED), ("job0003", S.QUEUED)]
    back = await store.reads.job_get("job0002")
    assert back is not None
    assert back.progress == Progress()  # put back to start over: no stale 8/13
    assert {(await store.reads.job_get(i)).attempts for i in ("job0002", "job0003")} == {0}  # type: ignore[union-attr]
    assert await store.reads.lease_owners() == set()


async def test_due_jobs_are_promoted(store: Store) -> None:
    await store.writes.jobs_insert(
        [new(n, status=S.SCHEDULED, scheduled_at=NOW + n) for n in (1, 2, 3)]
    )
    assert await store.reads.next_due() == NOW + 1
    promoted = await store.writes.jobs_promote(NOW + 2, limit=10)
    assert sorted(statuses(promoted)) == [("job0001", S.QUEUED), ("job0002", S.QUEUED)]
    assert all(t.message == "due" for t in promoted)
    assert await store.reads.next_due() == NOW + 3


async def test_history_after_reads_other_runtimes_in_seq_order(store: Store, other: Store) -> None:
    start = await store.reads.last_seq()
    await store.writes.jobs_insert([new(1)])
    await other.writes.jobs_insert([new(2), new(3)])
    await store.writes.jobs_insert([new(4)])
    theirs, position = await store.reads.history_after(start, 100, everything=False)
    assert [t.job_id for t in theirs] == ["job0002", "job0003"]
    assert all(t.origin == "them" for t in theirs)
    everything, _ = await store.reads.history_after(start, 100, everything=True)
    assert [t.job_id for t in everything] == ["job0001", "job0002", "job0003", "job0004"]
    # Past the own rows it skipped (on PostgreSQL, a notification still being sent may
    # hold the horizon, and with it the position, below the end of the history).
    assert position >= everything[-1].seq
    assert increasing(everything)
    page, position = await store.reads.history_after(start, 2, everything=True)
    assert [t.job_id for t in page] == ["job0001", "job0002"]
    assert position == page[-1].seq
    assert [
        t.job_id for t in await store.reads.history_page(start, 10, queue="q", job_id="job0003")
    ] == ["job0003"]


async def test_history_after_without_everything_keeps_what_a_worker_acts_on(
    store: Store, other: Store
) -> None:
    """Others' claims and completions are left out; their queued, scheduled and
    cancelling rows are kept (ACTED_ON), and the position passes what was left out."""
    start = await store.reads.last_seq()
    await other.writes.jobs_insert([new(1), new(2), new(3, status=S.SCHEDULED, scheduled_at=NOW)])
    _, claimed = await other.writes.jobs_claim(claim(2))
    await other.writes.jobs_finish([done("job0001")], NOW + 1)
    await other.writes.job_request_cancel("job0002", None, NOW + 2)
    acted_on, position = await store.reads.history_after(start, 100, everything=False)
    assert statuses(acted_on) == [
        ("job0001", S.QUEUED),
        ("job0002", S.QUEUED),
        ("job0003", S.SCHEDULED),
        ("job0002", S.CANCELLING),
    ]
    everything, _ = await store.reads.history_after(start, 100, everything=True)
    assert {t.status for t in everything} == {
        S.QUEUED,
        S.SCHEDULED,
        S.RUNNING,
        S.COMPLETED,
        S.CANCELLING,
    }
    assert len(claimed) == 2
    assert len(everything) == 7
    assert position >= acted_on[-1].seq
    # A page of the rows kept ends where its last row is, not at the end of the history.
    page, at = await store.reads.history_after(start, 2, everything=False)
    assert statuses(page) == statuses(acted_on)[:2]
    assert at == page[-1].seq


async def test_lists_page_newest_first(store: Store) -> None:
    await store.writes.jobs_insert([new(n) for n in range(1, 6)] + [new(9, queue="other")])
    first = await store.reads.jobs_list(ListParams(queue="q", limit=2))
    assert [j.id for j in first] == ["job0005", "job0004"]
    second = await store.reads.jobs_list(ListParams(queue="q", limit=2, before=first[-1].id))
    assert [j.id for j in second] == ["job0003", "job0002"]
    assert [j.id for j in await store.reads.jobs_list(ListParams(status=S.QUEUED, limit=1))] == [
        "job0009"
    ]
    history = await store.reads.job_history("job0001")
    assert [(h.job_id, h.status) for h in history] == [("job0001", S.QUEUED)]


async def test_a_queues_list_pages_across_every_status(store: Store) -> None:
    """One queue's jobs, newest first whatever their status (on PostgreSQL read a status
    at a time and merged), and no other queue's."""
    await store.writes.jobs_insert(
        [new(n) for n in range(1, 7)]
        + [new(7, status=S.SCHEDULED, scheduled_at=NOW + 60), new(8, queue="other")]
    )
    jobs, _ = await store.writes.jobs_claim(claim(limit=3))  # 1, 2, 3 run
    await store.writes.jobs_finish([done(jobs[0].id), done(jobs[1].id, status=S.FAILED)], NOW)
    pages: list[list[str]] = []
    before = None
    while True:
        page = await store.reads.jobs_list(ListParams(queue="q", limit=3, before=before))
        if not page:
            break
        pages.append([j.id for j in page])
        before = page[-1].id
    assert pages == [
        ["job0007", "job0006", "job0005"],
        ["job0004", "job0003", "job0002"],
        ["job0001"],
    ]
    assert {j.status for j in await store.reads.jobs_list(ListParams(queue="q"))} == {
        S.SCHEDULED,
        S.QUEUED,
        S.RUNNING,
        S.COMPLETED,
        S.FAILED,
    }


async def test_lists_and_counts_by_creator(store: Store) -> None:
    """A list filtered by creator (with a queue, on PostgreSQL merged a status at a time),
    and jobs_count: exactly what a bulk operation given the same match then takes."""
    await store.writes.jobs_insert(
        [
            new(1, created_by="ops"),
            new(2),
            new(3, created_by="ops"),
            new(4, created_by="cron"),
            new(5, queue="other", created_by="ops"),
        ]
    )
    mine = await store.reads.jobs_list(ListParams(created_by="ops"))
    assert [j.id for j in mine] == ["job0005", "job0003", "job0001"]
    one_queue = ListParams(queue="q", created_by="ops", limit=1)
    assert [j.id for j in await store.reads.jobs_list(one_queue)] == ["job0003"]
    assert await store.reads.jobs_list(ListParams(status=S.FAILED, created_by="ops")) == []
    waiting = frozenset({S.QUEUED, S.SCHEDULED})
    by_ops = JobMatch(statuses=waiting, queue="q", created_by="ops")
    assert await store.reads.jobs_count(by_ops) == 2
    assert await store.reads.jobs_count(JobMatch(statuses=waiting)) == 5
    assert await store.reads.jobs_count(JobMatch(statuses=frozenset({S.FAILED}))) == 0
    assert await store.reads.jobs_count(JobMatch(statuses=waiting, created_before=NOW + 3)) == 2
    assert len(await store.writes.jobs_cancel_matching(by_ops, NOW)) == 2
    assert await store.reads.jobs_count(by_ops) == 0
    cancelled = JobMatch(statuses=frozenset({S.CANCELLED}), created_by="ops")
    assert await store.reads.jobs_count(cancelled) == 2


async def test_finished_jobs_are_counted_per_minute_queue_and_status(store: Store) -> None:
    """Completed and failed jobs (not cancelled ones, not a failed attempt waiting for its
    retry), from ``since`` on, per minute of the clock (NOW is a minute's first second)."""
    minute = int(NOW // 60)
    await store.writes.jobs_insert([new(n) for n in range(1, 7)] + [new(7, queue="other")])
    await store.writes.jobs_claim(claim())
    await store.writes.jobs_claim(claim(queue="other", token="t2"))
    await store.writes.jobs_finish([done("job0006")], NOW - 1)  # before since
    await store.writes.jobs_finish([done("job0001"), done("job0002", status=S.FAILED)], NOW)
    await store.writes.jobs_finish([done("job0003")], NOW + 59.5)
    await store.writes.jobs_finish(
        [done("job0004"), done("job0005", status=S.CANCELLED, message="cancelled")], NOW + 61
    )
    retry = done("job0007", "t2", S.SCHEDULED, scheduled_at=NOW + 600, error="x", message="again")
    await store.writes.jobs_finish([retry], NOW + 62)
    rows = await store.reads.jobs_finished_per_minute(NOW)
    assert sorted(rows, key=lambda r: (r.minute, r.queue, r.status)) == [
        FinishedCount(minute=minute, queue="q", status=S.COMPLETED, count=2),
        FinishedCount(minute=minute, queue="q", status=S.FAILED, count=1),
        FinishedCount(minute=minute + 1, queue="q", status=S.COMPLETED, count=1),
    ]
    assert await store.reads.jobs_finished_per_minute(NOW + 120) == []


async def test_paused_queues_are_shared_and_keep_their_first_pause(
    store: Store, other: Store
) -> None:
    assert await store.queues.paused() == {}
    await store.queues.set_paused("q", True, "ops", NOW)
    await other.queues.set_paused("q", True, "later", NOW + 1)  # keeps the first
    await other.queues.set_paused("r", True, None, NOW + 2)
    assert await store.queues.paused() == {
        "q": PausedQueue(NOW, "ops"),
        "r": PausedQueue(NOW + 2, None),
    }
    await store.queues.set_paused("q", False, None, NOW + 3)
    await store.queues.set_paused("never", False, None, NOW + 3)  # nothing to resume
    assert await other.queues.paused() == {"r": PausedQueue(NOW + 2, None)}


async def test_purge_deletes_old_finished_jobs_and_their_history(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3)])
    await store.writes.jobs_claim(claim())
    await store.writes.jobs_finish([done("job0001"), done("job0002", status=S.FAILED)], NOW)
    purge: Callable[..., PurgeParams] = PurgeParams
    assert (
        await store.writes.jobs_purge(
            purge(statuses=frozenset({S.COMPLETED}), finished_before=NOW + 1)
        )
        == 1
    )
    assert await store.reads.job_get("job0001") is None
    assert await store.reads.job_history("job0001") == []
    everything = frozenset(JobStatus)
    assert (
        await store.writes.jobs_purge(purge(statuses=everything, finished_before=NOW)) == 0
    )  # too new
    assert await store.writes.jobs_purge(purge(statuses=everything, finished_before=NOW + 1)) == 1
    assert await store.reads.job_get("job0003") is not None  # still running: never purged


async def test_a_periodic_queue_is_first_seen_once(store: Store, other: Store) -> None:
    assert await store.writes.periodic_first_seen("nightly", NOW) == NOW
    assert await other.writes.periodic_first_seen("nightly", NOW + 50) == NOW  # another process
    assert await store.writes.periodic_first_seen("hourly", NOW + 60) == NOW + 60


async def test_a_rescue_keeps_what_the_rescuer_still_runs_or_writes(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2)])
    await store.writes.jobs_claim(claim(2, owner="me", token="t1"))
    # Both leases lapsed (the store was out of reach), but job0001's outcome is on its way.
    rescue = RescueParams(now=NOW + 60, expired_before=NOW + 60, keep=["job0001"])
    assert [t.job_id for t in await store.writes.jobs_rescue(rescue)] == ["job0002"]
    kept = await store.reads.job_get("job0001")
    assert kept is not None
    assert kept.status is S.RUNNING


async def test_jobs_of_a_claim_whose_answer_was_lost_are_put_back(store: Store) -> None:
    await store.writes.jobs_insert([new(1), new(2), new(3)])
    await store.writes.jobs_claim(claim(2, owner="me", token="lost"))
    await store.writes.jobs_claim(claim(1, owner="me", token="seen"))
    back = await store.writes.jobs_unclaim(["lost"], NOW)
    assert sorted(statuses(back)) == [("job0001", S.QUEUED), ("job0002", S.QUEUED)]
    assert {t.message for t in back} == {"requeued: the answer to its claim was lost"}
    assert (await store.reads.job_get("job0001")).attempts == 0  # type: ignore[union-attr]
    assert (await store.reads.job_get("job0003")).status is S.RUNNING  # type: ignore[union-attr]
    assert await store.writes.jobs_unclaim([], NOW) == []


ACME = {"tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


async def test_meta_and_tags_round_trip_and_last_the_jobs_life(store: Store) -> None:
    """Meta and tags come back as inserted (a tag "NULL" stays text, any text in a
    value), on every read and on the claimed job, and stay through a retry, the
    promotion back, a failure and a rerun; a job inserted without has none."""
    odd = {"quote": 'say "hi", \\ {x} [/y]', "empty": "", "café": "✓ \u2028"}
    await store.writes.jobs_insert(
        [
            new(1, meta=ACME, tags=["import", "NULL", "a,b"]),
            new(2, meta=odd),
            new(3),
        ]
    )
    for n, meta, tags in ((1, ACME, ["import", "NULL", "a,b"]), (2, odd, []), (3, {}, [])):
        job = await store.reads.job_get(f"job{n:04d}")
        assert job is not None
        assert (job.meta, job.tags) == (meta, tags)
    claimed, _ = await store.writes.jobs_claim(claim(1))
    tags = ["import", "NULL", "a,b"]
    assert [(j.id, j.meta, j.tags) for j in claimed] == [("job0001", ACME, tags)]
    retry = Finish.retry(
        "job0001", "t1", Progress(), error="e", traceback=None, at=NOW + 5, message="retry"
    )
    await store.writes.jobs_finish([retry], NOW)
    await store.writes.jobs_promote(NOW + 6, limit=10)
    again, _ = await store.writes.jobs_claim(claim(1, token="t2"))
    assert [(j.id, j.attempts, j.meta) for j in again] == [("job0001", 2, ACME)]
    await store.writes.jobs_finish([done("job0001", "t2", status=S.FAILED, error="e")], NOW)
    rerun, _ = await store.writes.job_rerun("job0001", "ops", NOW + 7)
    assert (rerun.status, rerun.meta, rerun.tags) == (S.QUEUED, ACME, tags)


async def test_lists_filter_by_every_tag_and_meta_pair(store: Store) -> None:
    await store.writes.jobs_insert(
        [
            new(1, meta=ACME, tags=["import"]),
            new(2, meta={"tenant": "acme"}, tags=["import", "eu"]),
            new(3, meta={"tenant": "other"}, tags=["import"]),
            new(4, meta={"tenant": "acme"}, tags=["import"], queue="other"),
            new(5, meta={"tenant": "acme", "region": "eu"}),
            new(6, tags=["NULL"]),
            new(7, meta={"tenant": ""}),
            new(8),
        ]
    )
    await store.writes.jobs_claim(claim(1))  # job0001 runs: the filters span statuses

    async def ids(**fields: object) -> list[int]:
        jobs = await store.reads.jobs_list(ListParams(**fields))  # type: ignore[arg-type]
        return [int(j.id[3:]) for j in jobs]

    assert await ids(tags=["import"]) == [4, 3, 2, 1]
    assert await ids(tags=["import", "eu"]) == [2]
    assert await ids(tags=["eu"]) == [2]  # a tag, not a substring of another
    assert await ids(tags=["NULL"]) == [6]
    assert await ids(tags=["none"]) == []
    assert await ids(meta={"tenant": "acme"}) == [5, 4, 2, 1]
    assert await ids(meta={"tenant": "acme", "region": "eu"}) == [5]
    assert await ids(meta={"tenant": ""}) == [7]  # exact: empty is a value
    assert await ids(meta={"tenant": "acm"}) == []
    assert await ids(meta={"traceparent": ACME["traceparent"]}) == [1]
    assert await ids(tags=["import"], meta={"tenant": "acme"}) == [4, 2, 1]
    # With a queue (on PostgreSQL read a status at a time), a status, and pages.
    assert await ids(queue="q", tags=["import"], meta={"tenant": "acme"}) == [2, 1]
    assert await ids(queue="q", status=S.QUEUED, tags=["import"]) == [3, 2]
    assert await ids(tags=["import"], limit=2) == [4, 3]
    assert await ids(tags=["import"], limit=2, before="job0003") == [2, 1]
