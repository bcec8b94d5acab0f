"""The Store protocol: everything the engine and runtime ask of a persistence backend.

Methods are domain-level and named noun first. A store never sleeps, never spawns tasks
and never touches the event bus: it runs one transaction per call and returns rows.
Every write that changes a job's status appends its history row in the same
transaction; the history row's ``seq`` is the event sequence number.

Methods taking many values take one params Struct. Failures surface as StoreError
subclasses (never a driver's own exception), and a failed call changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, Protocol, TypeVar

import msgspec

from .. import _codec
from .._clock import maybe_datetime, to_datetime
from .._models import NO_PROGRESS, HistoryEntry, Job, Progress
from .._states import TRANSITIONS, JobStatus, Owner

ACTED_ON: Final = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.CANCELLING})
"""The statuses of other runtimes' transitions that a runtime acts on with nobody
subscribed to its events: work to claim, a due time to wait for, a cancel to carry out
(see Engine._react). history_after(..., everything=False) returns only those: a fleet's
worker processes then read one row per job of each other's writes, not every row."""


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job to insert. ``payload`` is already validated and encoded as JSON."""

    id: str
    queue: str
    status: JobStatus
    payload: bytes
    priority: int = 0
    max_attempts: int = 1
    created_by: str | None = None
    created_at: float
    scheduled_at: float | None = None  # set with status SCHEDULED: when it becomes due
    timeout: float | None = None
    unique_key: str | None = None  # while a job with this key is unfinished, no other
    meta: dict[str, str] = msgspec.field(default_factory=dict)  # checked (see _limits.meta)
    tags: list[str] = msgspec.field(default_factory=list)  # checked, no repeats
    derived_id: bool = False  # the id is derived (a periodic tick): if taken, keep that job

    def as_job(self) -> Job:
        """The job this is once inserted, without reading it back."""
        at = to_datetime(self.created_at)
        return Job(
            id=self.id,
            queue=self.queue,
            status=self.status,
            payload=_codec.decode(self.payload),
            priority=self.priority,
            max_attempts=self.max_attempts,
            created_by=self.created_by,
            meta=self.meta,
            tags=self.tags,
            created_at=at,
            scheduled_at=maybe_datetime(self.scheduled_at),
            updated_at=at,
            timeout=self.timeout,
        )


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A committed status change: one history row, ready to become an event."""

    seq: int
    job_id: str
    queue: str
    status: JobStatus
    at: float
    message: str | None = None
    progress: Progress | None = None
    origin: str = ""  # the runtime that wrote it; set by history_after


class ClaimParams(msgspec.Struct, frozen=True, kw_only=True):
    """Claim up to ``limit`` queued jobs of ``queue`` for ``owner`` under ``token``."""

    queue: str
    limit: int
    owner: str
    token: str
    now: float
    lease_expires_at: float


Claimed = tuple[list[Job], list[Transition]]
"""What a claim took: its jobs, and their ``running`` transitions, in the same order."""

EarlyClaims = Callable[[list[Claimed]], None]
"""Told what a write's claims took before its commit is durable (see
StoreWrites.jobs_insert_claiming)."""


class Finish(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one run, written only while the run still holds its lease token.

    Build one with the named constructors, one per outcome the transition table allows a
    run (``completed``, ``failed``, ``retry``, ``cancelled``, ``requeued``). ``requeued``
    puts the job back (a worker shutting down); ``retry`` schedules it for
    ``scheduled_at``. Either way, a job whose cancellation was requested meanwhile
    becomes CANCELLED instead.
    """

    job_id: str
    token: str
    status: JobStatus
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    progress: Progress
    message: str | None = None
    scheduled_at: float | None = None

    @classmethod
    def completed(cls, job_id: str, token: str, progress: Progress, result: bytes) -> Finish:
        return cls(
            job_id=job_id, token=token, status=JobStatus.COMPLETED, progress=progress, result=result
        )

    @classmethod
    def failed(
        cls,
        job_id: str,
        token: str,
        progress: Progress,
        error: str,
        traceback: str | None = None,
    ) -> Finish:
        """Failed for good, ``error`` kept (and in the history row)."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.FAILED,
            progress=progress,
            error=error,
            traceback=traceback,
            message=error,
        )

    @classmethod
    def retry(
        cls,
        job_id: str,
        token: str,
        progress: Progress,
        *,
        error: str,
        traceback: str | None,
        at: float,
        message: str,
    ) -> Finish:
        """This attempt failed; the job waits ``scheduled`` until ``at``."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.SCHEDULED,
            progress=progress,
            error=error,
            traceback=traceback,
            scheduled_at=at,
            message=message,
        )

    @classmethod
    def cancelled(cls, job_id: str, token: str, progress: Progress) -> Finish:
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.CANCELLED,
            progress=progress,
            message="cancelled",
        )

    @classmethod
    def requeued(cls, job_id: str, token: str, message: str) -> Finish:
        """Back to the queue, to start over (no progress kept)."""
        return cls(
            job_id=job_id,
            token=token,
            status=JobStatus.QUEUED,
            progress=NO_PROGRESS,
            message=message,
        )


# Every outcome a constructor above makes is one the table allows a run.
assert {
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.SCHEDULED,
    JobStatus.CANCELLED,
    JobStatus.QUEUED,
} == {dst for src, dst, who in TRANSITIONS if src is JobStatus.RUNNING and who is Owner.EXECUTOR}


class ProgressWrite(msgspec.Struct, frozen=True):
    job_id: str
    token: str
    progress: Progress


class RescueParams(msgspec.Struct, frozen=True, kw_only=True):
    """Rescue jobs whose lease expired before ``expired_before`` (None: only leases of
    dead owners) or whose owner is known dead."""

    now: float
    expired_before: float | None
    dead_owners: Sequence[str] = ()
    max_orphanings: int = 3
    # Jobs the rescuing runtime still runs, or whose outcome it is still writing: never
    # put back by it, whatever their lease says (its lease may have lapsed while the
    # store was out of reach; the outcome on its way decides the job).
    keep: Sequence[str] = ()


class RunningProgress(msgspec.Struct, frozen=True):
    """The stored progress of a running job, and the seq of its latest transition."""

    job_id: str
    queue: str
    seq: int
    progress: Progress | None


class PurgeParams(msgspec.Struct, frozen=True, kw_only=True):
    """Delete jobs in ``statuses`` (terminal ones only) that finished before
    ``finished_before``, optionally of one queue, at most ``limit`` at once."""

    statuses: frozenset[JobStatus]
    finished_before: float
    queue: str | None = None
    limit: int = 1000


class JobMatch(msgspec.Struct, frozen=True, kw_only=True):
    """Which jobs a bulk operation takes, a batch (``limit``) at a time: of ``statuses``
    (only those the operation applies to count), and of the queue, creator and age given.
    ``as_of``: only jobs last changed then or before (a rerun job that fails again is not
    taken again by the same operation)."""

    statuses: frozenset[JobStatus]
    queue: str | None = None
    created_by: str | None = None
    created_before: float | None = None
    as_of: float | None = None
    limit: int = 500


class ListParams(msgspec.Struct, frozen=True, kw_only=True):
    """Newest first; ``before`` is the id of the last job of the previous page. A job
    matches ``tags`` when it has every one of them, ``meta`` when it has every pair
    (values compared exactly)."""

    queue: str | None = None
    status: JobStatus | None = None
    created_by: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    limit: int = 50
    before: str | None = None


class FinishedCount(msgspec.Struct, frozen=True, kw_only=True):
    """How many jobs of ``queue`` ended ``status`` (completed or failed) in one minute,
    ``minute`` counted in minutes since the Unix epoch (``floor(finished_at / 60)``)."""

    minute: int
    queue: str
    status: JobStatus
    count: int


class StoreReads(Protocol):
    """What the engine and the runtime read: jobs, their history, the event tail."""

    async def job_get(self, job_id: str) -> Job | None: ...

    async def jobs_list(self, params: ListParams) -> list[Job]: ...

    async def job_history(self, job_id: str) -> list[HistoryEntry]: ...

    async def jobs_count(self, match: JobMatch) -> int:
        """How many jobs ``match`` describes (its ``limit`` aside): what a bulk operation
        with it would take now."""
        ...

    async def jobs_finished_per_minute(self, since: float) -> list[FinishedCount]:
        """The jobs that completed or failed at ``since`` or later, counted per minute,
        queue and status (a range of the index on finished_at; the caller bounds it)."""
        ...

    async def history_after(
        self, seq: int, limit: int, *, everything: bool
    ) -> tuple[list[Transition], int]:
        """Transitions after ``seq``, oldest first: all of them with ``everything``, else
        only other runtimes' of the statuses in ACTED_ON; and the seq to pass next time
        (past skipped rows too)."""
        ...

    async def history_page(
        self, after: int, limit: int, *, queue: str | None, job_id: str | None
    ) -> list[Transition]:
        """Transitions after seq ``after`` (any origin), oldest first, for resuming."""
        ...

    async def jobs_running_progress(self, other_than: str) -> list[RunningProgress]:
        """The stored progress of every running job whose lease another owner than
        ``other_than`` holds (an index range over running jobs only)."""
        ...

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        """How many jobs each queue holds, per status."""
        ...

    async def last_seq(self) -> int: ...

    async def next_due(self) -> float | None:
        """When the earliest scheduled job becomes due, or None if none is scheduled."""
        ...

    async def lease_owners(self) -> set[str]:
        """The owners currently holding leases."""
        ...


class StoreWrites(Protocol):
    """Every change to jobs, each one transaction that appends its history rows."""

    # Whether these writes go one at a time (SQLite's one writer). Then a claim waits
    # for a write of outcomes anyway, and the engine makes it inside that write
    # (jobs_finish_claiming); where they run side by side (PostgreSQL's pool of
    # connections), a claim of its own runs beside the outcomes' write instead.
    one_at_a_time: bool

    async def jobs_insert(
        self, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[Transition | Job]:
        """Insert jobs in one transaction (the unit of group commit). Per job, in order:
        its transition, or, when its ``unique_key`` is taken by an unfinished job of
        its queue (even one earlier in the same batch) or its derived id exists
        already, that job instead. With ``connection`` (the application's, inside its
        open transaction; PostgreSQL only), in that transaction: the jobs exist if and
        when it commits."""
        ...

    async def jobs_claim(self, params: ClaimParams) -> Claimed:
        """Move up to ``limit`` queued jobs to running, highest priority then oldest first."""
        ...

    async def jobs_insert_claiming(
        self,
        jobs: Sequence[NewJob],
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition | Job], list[Claimed]]:
        """jobs_insert, then jobs_claim with each of ``claims`` in turn, in the same one
        transaction: what idle workers would claim once the jobs commit, claimed with
        them and committed by the same commit (see Engine._write_inserts). The claims'
        history rows follow the insert's. Returns what jobs_insert would, and per claim
        what jobs_claim would.

        ``early``, where the store can, is called on the event loop with the claims'
        results once the transaction holds them, before its commit is durable: the
        jobs' handlers then start while it is made (SQLite: during the commit's fsync,
        from its writer's thread). This write returning confirms them; its raising
        revokes them, since nothing was committed. A store that cannot (PostgreSQL)
        never calls it."""
        ...

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        """Write outcomes; a finish whose token no longer holds the lease writes nothing."""
        ...

    async def jobs_finish_claiming(
        self,
        finishes: Sequence[Finish],
        now: float,
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition], list[Claimed]]:
        """jobs_finish, then jobs_claim with each of ``claims`` in turn, in the same one
        transaction: the workers these outcomes freed claim again with them (see
        Engine._write_finishes). Returns what jobs_finish would, and per claim what
        jobs_claim would. ``early``: as jobs_insert_claiming's."""
        ...

    async def jobs_progress(self, writes: Sequence[ProgressWrite], now: float) -> None:
        """Store the latest progress of running jobs (fenced by lease token, no history)."""
        ...

    async def jobs_heartbeat(
        self, owner: str, job_ids: Collection[str], lease_expires_at: float
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still
        holds. Only the named ones: a lease the owner does not know it holds (a claim
        whose answer was lost with the connection) must expire, so the job runs again."""
        ...

    async def jobs_rescue(self, params: RescueParams) -> list[Transition]:
        """Return orphaned jobs to queued (or fail them after too many orphanings)."""
        ...

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        """Put back every job ``owner`` still holds (a worker shutting down): queued, or
        cancelled where cancellation was requested."""
        ...

    async def jobs_unclaim(self, tokens: Sequence[str], now: float) -> list[Transition]:
        """Put back the jobs held under claim ``tokens`` whose answer this runtime never
        got (the connection was lost while the claim committed), so they run again now
        rather than when their lease expires."""
        ...

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        """Move up to ``limit`` scheduled jobs that are due by ``now`` to queued."""
        ...

    async def periodic_first_seen(self, queue: str, now: float) -> float:
        """When the periodic ``queue`` first ran on this store: ``now`` the first time it
        is asked (and stored), the stored time ever after, in whatever process."""
        ...

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        """Cancel a pending job, or mark a running one ``cancelling``; else change nothing."""
        ...

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        """Put a terminal job back to queued with attempts reset."""
        ...

    async def jobs_purge(self, params: PurgeParams) -> int:
        """Delete finished jobs (and their history) per ``params``; how many were."""
        ...

    async def jobs_cancel_matching(self, match: JobMatch, now: float) -> list[Transition]:
        """Cancel up to ``match.limit`` matching jobs in one transaction, each as
        ``job_request_cancel`` would (waiting ones cancelled, running ones cancelling)."""
        ...

    async def jobs_rerun_matching(
        self, match: JobMatch, by: str | None, now: float
    ) -> list[Transition]:
        """Rerun up to ``match.limit`` matching ended jobs in one transaction, each as
        ``job_rerun`` would."""
        ...

    async def outcome_transaction(self) -> OutcomeTransaction:
        """Begin a transaction for a handler to write in, which commits with its job's
        outcome (see OutcomeTransaction). PostgreSQL only: a store that cannot share a
        transaction with the application (SQLite) raises ValidationError."""
        ...


class OutcomeTransaction(Protocol):
    """A transaction a handler writes in (``conveyor.transaction()``) that commits only
    together with its job's outcome: the handler's writes and its completion are stored
    both or neither. Exactly one of ``commit`` and ``rollback`` ends it."""

    @property
    def connection(self) -> object:
        """The driver's connection, inside the open transaction (asyncpg's)."""
        ...

    async def commit(self, finish: Finish, now: float) -> list[Transition]:
        """Write ``finish`` in the transaction and commit both; when the run no longer
        holds its lease (the job was rescued) roll back instead and return no transition.
        A StoreError means nothing was committed, unless it says the outcome is unknown."""
        ...

    async def rollback(self) -> None:
        """Undo the handler's writes and end the transaction (never raises: a connection
        already gone took the transaction with it)."""
        ...


class PausedQueue(msgspec.Struct, frozen=True):
    """A paused queue: since when (Unix seconds) and by whom."""

    at: float
    by: str | None = None


class WorkerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A runtime running workers, as it registered itself (times in Unix seconds)."""

    id: str  # its lease owner id: host/pid/random
    host: str
    pid: int
    queues: dict[str, int]  # each queue it runs, with its concurrency
    started_at: float
    heartbeat_at: float
    lease_ttl: float  # a heartbeat older than this: the worker is lost
    version: str


class WorkerRegistry(Protocol):
    """The runtimes that run workers, each registered and heartbeating."""

    async def register(self, worker: WorkerRecord) -> None:
        """Add (or replace) a worker; forget any whose heartbeat is over a day old."""
        ...

    async def beat(self, worker_id: str, now: float) -> None: ...

    async def deregister(self, worker_id: str) -> None: ...

    async def all(self) -> list[WorkerRecord]:
        """Every registered worker, by id."""
        ...


class QueueSettings(Protocol):
    """What the fleet shares about queues beside their jobs: which are paused."""

    async def paused(self) -> dict[str, PausedQueue]:
        """The paused queues, by name."""
        ...

    async def set_paused(self, queue: str, paused: bool, by: str | None, now: float) -> None:
        """Pause or resume ``queue`` for every runtime of the store (a queue paused twice
        keeps its first pause); on PostgreSQL the others hear of it at once."""
        ...


class CommitWatch(Protocol):
    """How a runtime learns that another runtime committed, beside the Store's data
    operations: the engine's tail reads the history when it hears of a commit."""

    numbers_writes_in_commit_order: bool
    """Whether each write's history rows get consecutive seqs right after every row
    committed before it (SQLite: one write transaction at a time on the file, and
    AUTOINCREMENT). Then the engine may publish a write's transitions as it returned them
    when they follow the last seq it published, with no gap (see Publisher.committed)."""

    def watch(self, wake: Callable[[], None], queued: Callable[[Collection[str]], None]) -> None:
        """Have ``wake()`` called, on the event loop, when another runtime commits a
        transition, and ``queued(queues)`` as well when it says it queued jobs on
        ``queues`` (so their workers claim before the history is read). A store that
        cannot be notified (SQLite) calls neither: the engine then learns of those
        commits by calling ``changed()`` every poll interval."""
        ...

    async def changed(self) -> bool:
        """Whether another runtime committed since the last call (cheap; no I/O on disk).
        True when the store cannot tell."""
        ...

    def queues_changed(self) -> bool:
        """Whether a queue may have been paused or resumed since the last call: on
        PostgreSQL, when that was notified (and every few seconds, as a notification can
        be lost); on SQLite always (the engine then reads once per poll interval)."""
        ...


class Store(Protocol):
    """A persistence backend: its reads, its writes, how it hears of other runtimes'
    commits, the queues' shared settings and the registry of workers, as five parts,
    each handed to what needs it."""

    async def open(self, origin: str) -> None:
        """Connect, create or migrate the schema. ``origin`` tags this runtime's writes."""
        ...

    async def close(self) -> None: ...

    @property
    def reads(self) -> StoreReads: ...

    @property
    def writes(self) -> StoreWrites: ...

    @property
    def commits(self) -> CommitWatch:
        """How this runtime hears of other runtimes' commits."""
        ...

    @property
    def queues(self) -> QueueSettings: ...

    @property
    def workers(self) -> WorkerRegistry: ...

    @property
    def errors(self) -> Mapping[str, int]:
        """How many StoreErrors this store has raised for what the database answered or
        failed to answer, by class name (``StoreBusy``, ``StoreUnavailable``,
        ``StoreError``): what conveyor.metrics exports as ``conveyor_store_errors_total``."""
        ...


_E = TypeVar("_E", bound=BaseException)


def counted(errors: dict[str, int], error: _E) -> _E:
    """``error``, counted in ``errors`` by its class name (see Store.errors): each backend
    passes every StoreError it makes of a driver's error through here."""
    kind = type(error).__name__
    errors[kind] = errors.get(kind, 0) + 1
    return error
