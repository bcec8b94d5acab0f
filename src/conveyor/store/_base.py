"""The Store protocol: everything the engine and runtime ask of a persistence backend.

Methods are domain-level and named noun first. A store never sleeps, never spawns tasks
and never touches the event bus: it runs one transaction per call and returns rows.
Every write that changes a job's status appends its history row in the same
transaction; the history row's ``seq`` is the event sequence number.

Methods taking many values take one params Struct (see _records). Failures surface as
StoreError subclasses (never a driver's own exception), and a failed call changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol, TypeVar

from .._models import HistoryEntry, Job
from .._states import JobStatus
from ._records import (
    Claimed,
    ClaimParams,
    EarlyClaims,
    Finish,
    FinishedCount,
    JobMatch,
    ListParams,
    NewJob,
    PausedQueue,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    RunningProgress,
    Transition,
    WorkerRecord,
)


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
