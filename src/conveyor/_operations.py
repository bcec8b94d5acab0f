"""The job operations of a Runtime: enqueue, look up, list, cancel, rerun and purge
(waiting and watching are JobWatching's, in _watching). They check what the caller
passes, then read the store or ask the engine to write (the engine does each write
together with its wake-ups and local effects). Runtime (in _runtime.py) adds the life
cycle, which opens and closes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ._bus import EventBus
from ._clock import Clock
from ._errors import (
    JobNotFound,
    QueueNotFound,
    RuntimeClosed,
    ValidationError,
)
from ._ids import IdGenerator
from ._limits import (
    Limits,
    list_filters,
    list_options,
    name,
    optional_text,
    seconds,
)
from ._limits import statuses as check_statuses
from ._models import EnqueueOptions, Event, HistoryEntry, Job
from ._options import JobOptions, job_options, new_job, with_trace_context
from ._spec import QueueSpec
from ._states import TERMINAL, JobStatus
from ._tracing import TRACING
from .engine import Engine, transition_event
from .store import ListParams, Store


class JobOperations:
    """What an application does with jobs. See Runtime for the whole picture.

    Given the store it reads, the engine that writes, the bus it subscribes to, and the
    resolved specs of the queues it serves (``workers``: whether it runs their jobs).
    """

    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        bus: EventBus,
        clock: Clock,
        specs: dict[str, QueueSpec],
        workers: bool,
        limits: Limits,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.specs = specs
        self.runs_workers = workers  # whether this runtime runs its queues
        self.limits = limits
        self._engine = engine
        self._ids = IdGenerator()
        self._open = False  # the life cycle's to set: open once everything runs

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeClosed("the runtime is not running: use it inside `async with`")

    @property
    def observes_all(self) -> bool:
        """True for a runtime without queues nor workers: it reads every queue."""
        return not self.specs and not self.runs_workers

    def _queue(self, queue_name: str) -> QueueSpec:
        spec = self.specs.get(queue_name) if isinstance(queue_name, str) else None
        if spec is None:
            raise QueueNotFound(str(queue_name))
        return spec

    def _check_queue_name(self, queue: str) -> None:
        """QueueNotFound unless reads of this queue are this runtime's to answer."""
        name("queue", queue)
        if not self.observes_all:
            self._queue(queue)

    async def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the job's run time limit)
        unique_key: str | None = None,
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
        connection: object | None = None,
    ) -> Job:
        """Store a job and return it once it is durable.

        ``priority``: higher runs first (FIFO among equals). ``delay`` (seconds or a
        timedelta) or ``at`` (an aware datetime): the job waits ``scheduled`` until then.
        ``max_attempts`` and ``timeout`` (seconds) override the queue's for this job.
        ``unique_key``: while a job of this queue with the same key is unfinished, return
        that job instead of storing a new one (race-free, also across processes).

        ``meta``: what the application says about the job beside its payload, e.g.
        ``{"tenant": "acme"}``; ``tags``: labels to find it by, e.g. ``["import"]``. Both
        are kept for the job's whole life (retries and reruns too), returned on it, and
        filter ``list_jobs``. Meta maps str to str: keys (and tags) are 1 to 64 ASCII
        letters, digits or ``_ . : / -``, values any text. Strings only, unlike Oban's
        or River's JSON metadata: the filters arrive as strings (``?meta.tenant=acme``,
        ``--meta tenant=acme``) and compare exactly, with no guessing whether ``"42"``
        meant a number; it is the shape of a propagation carrier (W3C ``traceparent``,
        message headers, as in Celery's); and a job's data has its place, the payload.
        Sizes are bounded as JSON (Limits.meta_bytes, Limits.tags_bytes); a repeated tag
        is kept once.

        Raises QueueNotFound, ValidationError (nothing stored), or a StoreError (nothing
        stored; safe to retry; on SQLite a job its failed commit claimed may have begun
        meanwhile, and was stopped). Concurrent calls share one commit.

        ``connection`` (PostgreSQL): an asyncpg connection inside the application's open
        transaction; the job is written in it and exists only if that transaction
        commits, when workers hear of it. It delays no other writer meanwhile.
        """
        options = EnqueueOptions(
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
            unique_key=unique_key,
            meta=meta,  # type: ignore[arg-type]  # any Mapping: checked into a dict
            tags=tags,  # type: ignore[arg-type]  # any iterable: checked into a list
        )
        (job,) = await self.submit(queue, [payload], options, connection=connection)
        return job

    async def enqueue_many(
        self,
        queue: str,
        payloads: Iterable[Any],
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the job's run time limit)
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
        connection: object | None = None,
    ) -> list[Job]:
        """Store many jobs, with the same options as ``enqueue`` (``meta``, ``tags`` and
        ``connection`` included; every job gets the same meta and tags), in one commit:
        all of them, or (on any error) none."""
        options = EnqueueOptions(
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
            meta=meta,  # type: ignore[arg-type]  # any Mapping: checked into a dict
            tags=tags,  # type: ignore[arg-type]  # any iterable: checked into a list
        )
        return await self.submit(queue, payloads, options, connection=connection)

    async def submit(
        self,
        queue: str,
        payloads: Iterable[Any],
        options: EnqueueOptions,
        *,
        connection: object | None = None,
    ) -> list[Job]:
        """What ``enqueue`` and ``enqueue_many`` do, with the options as one record (the
        form the server receives them in): the jobs, stored in one commit."""
        self._require_open()
        name("queue", queue)
        if self.observes_all:
            raise QueueNotFound(
                queue,
                message=f"cannot enqueue to {queue!r}: this runtime only observes the store"
                " (it knows no queue's payload type); enqueue where the queue is defined",
            )
        q = self._queue(queue)
        now = self.clock.now()
        checked = job_options(q, now, self.limits, options)
        if TRACING is None or not TRACING.active():
            return await self._insert(q, payloads, self._ids.new, checked, now, connection)
        payloads = list(payloads)
        made = [self._ids.new() for _ in payloads]
        with TRACING.send(q.name, made) as context:  # the producer span (see _tracing)
            carried = with_trace_context(checked, context, self.limits)
            return await self._insert(q, payloads, iter(made).__next__, carried, now, connection)

    async def _insert(
        self,
        q: QueueSpec,
        payloads: Iterable[Any],
        next_id: Callable[[], str],
        checked: JobOptions,
        now: float,
        connection: object | None,
    ) -> list[Job]:
        new = [new_job(next_id(), q, p, checked, now, self.limits) for p in payloads]
        if checked.unique_key is not None and len(new) != 1:
            raise ValidationError("unique_key names one job: enqueue such jobs one at a time")
        if not new:
            return []
        if connection is not None:
            results = await self._engine.insert_in(connection, new)
        else:
            results = await self._engine.insert(new)
        return [r if isinstance(r, Job) else n.as_job() for n, r in zip(new, results, strict=True)]

    async def _get(self, job_id: str, queue: str | None = None) -> Job:
        name("job_id", job_id)
        job = await self.store.reads.job_get(job_id)
        if job is None or (queue is not None and job.queue != queue):
            raise JobNotFound(job_id)
        return job

    async def job_status(self, queue: str, job_id: str) -> Job:
        """The job's current record. JobNotFound if it is not a job of ``queue``."""
        self._require_open()
        self._check_queue_name(queue)
        return await self._get(job_id, queue)

    async def job(self, job_id: str) -> Job:
        """The current record of a job of any queue. JobNotFound if there is none."""
        self._require_open()
        return await self._get(job_id)

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        """Jobs per status for each of this runtime's queues (zeros included); for an
        observing runtime, each queue that has jobs in the store."""
        self._require_open()
        stored = await self.store.reads.queue_counts()
        names = sorted(stored) if self.observes_all else list(self.specs)
        return {
            name: {status: stored.get(name, {}).get(status, 0) for status in JobStatus}
            for name in names
        }

    async def missed_events(
        self,
        since: int,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """The transitions after seq ``since``, oldest first, as events: what a
        subscriber that saw ``since`` last has missed. Page with the last seq returned."""
        self._require_open()
        transitions = await self.store.reads.history_page(since, limit, queue=queue, job_id=job_id)
        return [transition_event(t) for t in transitions]

    async def request_job_cancel(self, queue: str, job_id: str) -> Job:
        """Cancel a job: a pending one at once (it never runs); a running one moves to
        ``cancelling`` and its handler is stopped, ending ``cancelled``. A job already
        finished is returned unchanged."""
        self._require_open()
        self._check_queue_name(queue)
        name("job_id", job_id)
        return await self._engine.request_cancel(job_id, queue)

    async def cancel(self, job_id: str) -> Job:
        """``request_job_cancel`` for a job of any of this runtime's queues, found by id."""
        self._require_open()
        job = await self._get(job_id)
        return await self.request_job_cancel(job.queue, job_id)

    async def list_jobs(
        self,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        created_by: str | None = None,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> list[Job]:
        """Jobs newest first, of ``queue``, ``status`` and ``created_by`` (exactly) where
        given. For the next page pass ``cursor=`` the last job's id.

        ``tags``: only jobs having every one of these tags; ``meta``: only jobs whose
        meta holds every one of these pairs (exact values): ``list_jobs(tags=["import"],
        meta={"tenant": "acme"})``. See docs/metadata.md for what they cost."""
        self._require_open()
        checked, limit, cursor = list_options(status, limit, cursor)
        creator = optional_text("created_by", created_by, self.limits.created_by_bytes)
        wanted_tags, wanted_meta = list_filters(tags, meta, self.limits)
        if queue is not None:  # looked up last, as the Client checks every value first
            self._check_queue_name(queue)
        return await self.store.reads.jobs_list(
            ListParams(
                queue=queue,
                status=checked,
                created_by=creator,
                limit=limit,
                before=cursor,
                tags=wanted_tags,
                meta=wanted_meta,
            )
        )

    async def history(self, job_id: str) -> list[HistoryEntry]:
        """Every transition of the job, oldest first, with time and message."""
        self._require_open()
        name("job_id", job_id)
        entries = await self.store.reads.job_history(job_id)
        if not entries:
            await self._get(job_id)  # raises JobNotFound
        return entries

    async def rerun(self, job_id: str, *, by: str | None = None) -> Job:
        """Put a completed, failed or cancelled job back to ``queued``, attempts reset.
        InvalidTransition for a job that is still pending or running."""
        self._require_open()
        name("job_id", job_id)
        by = optional_text("by", by, self.limits.created_by_bytes)
        return await self._engine.rerun(job_id, by)

    async def purge(
        self,
        *,
        older_than: float | timedelta = 0,
        statuses: Iterable[JobStatus | str] | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs (and their history) that finished more than
        ``older_than`` ago; returns how many. Only terminal statuses may be given
        (None: all three, as in the clients)."""
        self._require_open()
        if queue is not None:
            self._check_queue_name(queue)
        age = seconds("older_than", older_than)
        wanted = TERMINAL if statuses is None else check_statuses("statuses", statuses)
        if not wanted <= TERMINAL:
            raise ValidationError("only completed, failed or cancelled jobs can be purged")
        return await self._engine.purge(wanted, self.clock.now() - age, queue)
