"""Runtime: the object an application holds. It owns one task group and wires the store,
the engine and the event bus together."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from . import _codec
from ._bus import DEFAULT_MAX_BUFFER, EventBus, EventStream
from ._clock import Clock, SystemClock, maybe_datetime, to_datetime
from ._errors import (
    EventStreamOverflow,
    JobNotFound,
    QueueNotFound,
    RuntimeClosed,
    ValidationError,
    WaitTimeout,
)
from ._ids import IdGenerator
from ._logging import get_logger
from ._models import Event, HistoryEntry, Job
from ._options import JobOptions, check_queue_class, job_options, seconds
from ._periodic import PeriodicQueue, parse_schedule
from ._queue import Queue
from ._states import TERMINAL, JobStatus
from .engine import Engine, transition_event
from .engine._executor import StopReason
from .store import ListParams, NewJob, SQLiteStore, Store

if TYPE_CHECKING:
    from .server import Server

log = get_logger("conveyor")

MAX_LIST_LIMIT = 1000


class Runtime:
    """Durable queues with bounded concurrency, in this process.

    ``async with Runtime("conveyor.db", queues=[ExportQueue()]) as rt:`` opens (or
    creates) the SQLite file, starts a worker pool per queue and returns once they run.
    Leaving the block stops claiming, gives running jobs ``shutdown_grace`` seconds to
    finish, then cancels the rest and puts them back to ``queued`` for the next start.

    ``workers=False`` makes a runtime that only enqueues and reads (the queues are still
    given, for their names and payload types) while other processes run the jobs. With
    no queues as well it observes every queue in the store: it lists, watches, cancels,
    reruns and purges any job, but cannot enqueue (it knows no payload types). This is
    what ``conveyor serve --db`` runs.

    Tuning: ``lease_ttl`` is how long a crashed worker's jobs stay claimed before another
    worker takes them back (live workers renew their leases every third of it);
    ``poll_interval`` bounds how late this runtime notices what other processes did;
    ``progress_interval`` is how often progress reports are written to the store (they
    are broadcast at once regardless).

    Retention: a worker runtime deletes completed and cancelled jobs ``retain_completed``
    after they finished (default 7 days) and failed ones after ``retain_failed`` (30
    days), history included; ``purge()`` does it on demand.

    ``serve=("127.0.0.1", 8765)`` also starts the websocket server (port 0: any free
    port; see ``server_url``). Any address other than loopback requires ``token=``;
    ``allowed_origins`` lists the browser origins allowed besides the page's own;
    a websocket message over ``max_message_bytes`` gets a ``too_large`` error reply.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store = "conveyor.db",
        queues: Sequence[Queue[Any]] = (),
        *,
        workers: bool = True,
        shutdown_grace: float = 10.0,
        lease_ttl: float = 30.0,
        poll_interval: float = 0.1,
        progress_interval: float = 0.25,
        max_payload_bytes: int = 1 << 20,
        clock: Clock | None = None,
        serve: tuple[str, int] | None = None,
        token: str | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_message_bytes: int = 1 << 20,
        retain_completed: float | timedelta = timedelta(days=7),
        retain_failed: float | timedelta = timedelta(days=30),
    ) -> None:
        self.store: Store = (
            SQLiteStore(Path(store)) if isinstance(store, (str, os.PathLike)) else store
        )
        self.queues: dict[str, Queue[Any]] = {}
        for queue in queues:
            check_queue_class(queue, workers)
            if queue.name in self.queues:
                raise ValidationError(f"two queues are named {queue.name!r}")
            self.queues[queue.name] = queue
        for name, value in (
            ("shutdown_grace", shutdown_grace),
            ("lease_ttl", lease_ttl),
            ("poll_interval", poll_interval),
            ("progress_interval", progress_interval),
        ):
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValidationError(f"{name} must be a number >= 0, not {value!r}")
        if lease_ttl <= 0 or poll_interval <= 0:
            raise ValidationError("lease_ttl and poll_interval must be > 0")
        self._stack: AsyncExitStack | None = None
        self._server: Server | None = None
        if serve is not None:
            self.attach_server(
                *serve,
                token=token,
                allowed_origins=allowed_origins,
                max_message_bytes=max_message_bytes,
            )
        self.max_payload_bytes = max_payload_bytes
        self._periodic = [
            PeriodicQueue(
                q.name,
                parse_schedule(f"{type(q).__name__}.periodic", type(q).periodic),
                _codec.encode_payload(type(q).periodic_payload, q.payload_type, max_payload_bytes),
                type(q).periodic_catch_up,
            )
            for q in self.queues.values()
            if type(q).periodic is not None
        ]
        self.workers = workers
        self.shutdown_grace = float(shutdown_grace)
        self.max_payload_bytes = max_payload_bytes
        self.clock: Clock = clock or SystemClock()
        self.bus = EventBus()
        self._engine = Engine(
            self.store,
            self.bus,
            self.clock,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
            retention={
                JobStatus.COMPLETED: seconds("retain_completed", retain_completed),
                JobStatus.CANCELLED: seconds("retain_completed", retain_completed),
                JobStatus.FAILED: seconds("retain_failed", retain_failed),
            },
        )
        self._ids = IdGenerator()
        self._tg: TaskGroup | None = None
        self._open = False
        self._force = anyio.Event()

    def attach_server(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        """What ``serve=`` does, for a runtime already built (``conveyor worker --serve``
        serves the app's runtime). Call it before ``async with``."""
        from .server import Server, is_loopback

        if self._stack is not None:
            raise RuntimeClosed("attach_server() must come before the runtime starts")
        if self._server is not None:
            raise ValidationError("this runtime already serves on " + self._server.url)
        if not is_loopback(host) and not token:
            raise ValidationError(f"serving on {host!r}, beyond this machine, requires a token=")
        self._server = Server(
            self,
            host,
            port,
            token=token,
            allowed_origins=allowed_origins,
            max_message_bytes=max_message_bytes,
        )

    @property
    def server_url(self) -> str:
        """``ws://host:port`` of the websocket server (started with ``serve=``)."""
        if self._server is None:
            raise RuntimeClosed("this runtime serves nothing: pass serve=(host, port)")
        return self._server.url

    # -- life cycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeClosed("a Runtime can be entered only once")
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self.store.open(self._engine.owner)
            stack.push_async_callback(self.store.close)
            self._tg = tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._engine.inserter.run)
            tg.start_soon(self._engine.finisher.run)
            tg.start_soon(self._engine.tail_loop)
            if self.workers:
                await self._engine.start_workers(tg, list(self.queues.values()), self._periodic)
            if self._server is not None:
                await tg.start(self._server.run)
        except BaseException as exc:
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                # The task group wraps what failed to start (a port in use): raise that
                # alone, as a plain OSError or ConveyorError a caller can catch.
                if group.exceptions != (exc,):
                    raise
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._stack is None or self._tg is None:
            raise RuntimeClosed("the runtime was not entered")
        self._open = False
        try:
            forced = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
            with anyio.CancelScope(shield=True):
                await self._drain_workers(force=forced)
                engine = self._engine
                engine.inserter.close()
                await engine.inserter.drain()
                await engine.finisher.drain()
                if self.workers:
                    await engine.flush_progress()
                    await engine.release_all()
        finally:
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)
        return None

    async def _drain_workers(self, *, force: bool) -> None:
        """Stop claiming; let running jobs finish within the grace period; then cancel
        them (async handlers stop at once, sync ones at their next check_cancelled) and,
        if some still run a few seconds later, abandon their threads."""
        pools = list(self._engine.pools.values())
        for pool in pools:
            pool.stop_claiming()

        async def all_done() -> None:
            for pool in pools:
                await pool.done.wait()

        async def until_forced(scope: anyio.CancelScope) -> None:
            await self._force.wait()
            scope.cancel()

        for phase in ("grace", "cancel", "abandon"):
            if phase == "cancel":
                for run in list(self._engine.running.values()):
                    run.stop(StopReason.SHUTDOWN)
            elif phase == "abandon":
                for run in list(self._engine.running.values()):
                    run.abandon()
            limit = {"grace": self.shutdown_grace, "cancel": 5.0, "abandon": 5.0}[phase]
            if force or self._force.is_set():
                limit = 0 if phase != "abandon" else 1.0
            async with anyio.create_task_group() as tg:
                with anyio.move_on_after(limit) as scope:
                    tg.start_soon(until_forced, scope)
                    await all_done()
                tg.cancel_scope.cancel()
            if all(pool.done.is_set() for pool in pools):
                return
        log.error("some sync handlers did not stop; their jobs are released for rerun")

    async def run_until_signalled(
        self, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Serve until SIGINT or SIGTERM, then return, so leaving ``async with`` stops
        gracefully. A second signal during that stop cancels running jobs at once."""
        tg = self._require_open()
        first = anyio.Event()

        async def watch(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            # Keeps the handlers installed through the shutdown, for the second signal.
            with anyio.open_signal_receiver(*signals) as received:
                task_status.started()
                count = 0
                async for signum in received:
                    count += 1
                    log.info("received %s (%d)", signal.Signals(signum).name, count)
                    first.set()
                    if count >= 2:
                        self._force.set()
                        return

        await tg.start(watch)
        await first.wait()

    def _require_open(self) -> TaskGroup:
        if not self._open or self._tg is None:
            raise RuntimeClosed("the runtime is not running: use it inside `async with`")
        return self._tg

    # -- jobs --------------------------------------------------------------------------

    @property
    def observes_all(self) -> bool:
        """True for a runtime without queues nor workers: it reads every queue."""
        return not self.queues and not self.workers

    def _queue(self, name: str) -> Queue[Any]:
        queue = self.queues.get(name)
        if queue is None:
            raise QueueNotFound(name)
        return queue

    def _check_queue_name(self, name: str) -> None:
        """QueueNotFound unless reads of this queue are this runtime's to answer."""
        if not isinstance(name, str):
            raise ValidationError(f"queue must be a string, not {type(name).__name__}")
        if not self.observes_all:
            self._queue(name)

    def _new_job(
        self,
        queue: Queue[Any],
        payload: Any,
        options: JobOptions,
        now: float,
        unique_key: str | None,
    ) -> NewJob:
        data = _codec.encode_payload(payload, queue.payload_type, self.max_payload_bytes)
        return NewJob(
            id=self._ids.new(),
            queue=queue.name,
            status=JobStatus.QUEUED if options.scheduled_at is None else JobStatus.SCHEDULED,
            payload=data,
            priority=options.priority,
            max_attempts=options.max_attempts,
            created_by=options.created_by,
            created_at=now,
            scheduled_at=options.scheduled_at,
            timeout=options.timeout,
            unique_key=unique_key,
        )

    def _as_job(self, new: NewJob) -> Job:
        at = to_datetime(new.created_at)
        return Job(
            id=new.id,
            queue=new.queue,
            status=new.status,
            payload=_codec.decode(new.payload),
            priority=new.priority,
            max_attempts=new.max_attempts,
            created_by=new.created_by,
            created_at=at,
            scheduled_at=maybe_datetime(new.scheduled_at),
            updated_at=at,
            timeout=new.timeout,
        )

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
    ) -> Job:
        """Store a job and return it once it is durable.

        ``priority``: higher runs first (FIFO among equals). ``delay`` (seconds or a
        timedelta) or ``at`` (an aware datetime): the job waits ``scheduled`` until then.
        ``max_attempts`` and ``timeout`` (seconds) override the queue's for this job.
        ``unique_key``: while a job of this queue with the same key is unfinished, return
        that job instead of storing a new one (race-free, also across processes).
        Raises QueueNotFound, ValidationError (nothing stored), or a StoreError (nothing
        stored; safe to retry). Concurrent calls share one commit.
        """
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise ValidationError("unique_key must be a non-empty string")
        (job,) = await self._enqueue(
            queue,
            [payload],
            unique_key,
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
        )
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
    ) -> list[Job]:
        """Store many jobs, with the same options as ``enqueue``, in one commit: all of
        them, or (on any error) none."""
        return await self._enqueue(
            queue,
            payloads,
            None,
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
        )

    async def _enqueue(
        self, queue: str, payloads: Iterable[Any], unique_key: str | None, **options: Any
    ) -> list[Job]:
        self._require_open()
        if self.observes_all:
            raise QueueNotFound(
                queue,
                message=f"cannot enqueue to {queue!r}: this runtime only observes the store"
                " (it knows no queue's payload type); enqueue where the queue is defined",
            )
        q = self._queue(queue)
        now = self.clock.now()
        checked = job_options(q, now, **options)
        new = [self._new_job(q, p, checked, now, unique_key) for p in payloads]
        if not new:
            return []
        results = await self._engine.inserter.submit(new)
        return [
            r if isinstance(r, Job) else self._as_job(n) for n, r in zip(new, results, strict=True)
        ]

    async def _get(self, job_id: str, queue: str | None = None) -> Job:
        if not isinstance(job_id, str):
            raise ValidationError(f"job_id must be a string, not {type(job_id).__name__}")
        job = await self.store.job_get(job_id)
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
        stored = await self.store.queue_counts()
        names = sorted(stored) if self.observes_all else list(self.queues)
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
        transitions = await self.store.history_page(since, limit, queue=queue, job_id=job_id)
        return [transition_event(t) for t in transitions]

    async def request_job_cancel(self, queue: str, job_id: str) -> Job:
        """Cancel a job: a pending one at once (it never runs); a running one moves to
        ``cancelling`` and its handler is stopped, ending ``cancelled``. A job already
        finished is returned unchanged."""
        self._require_open()
        self._check_queue_name(queue)
        job, transitions = await self.store.job_request_cancel(job_id, queue, self.clock.now())
        self._engine.committed(transitions)
        if any(t.status is JobStatus.CANCELLING for t in transitions):
            self._engine.cancel_local(job_id)
        return job

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:  # noqa: ASYNC109
        """Wait until the job reaches a terminal state and return it. WaitTimeout after
        ``timeout`` seconds (the job is unaffected)."""
        self._require_open()
        async with self.bus.subscribe(job_id=job_id, max_buffer=64) as stream:
            try:
                with anyio.fail_after(timeout):
                    job = await self._get(job_id)
                    while job.status not in TERMINAL:
                        async for event in stream:
                            if event.status in TERMINAL:
                                break
                        job = await self._get(job_id)
            except TimeoutError:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout}s") from None
        return job

    async def list_jobs(
        self,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[Job]:
        """Jobs newest first. For the next page pass ``cursor=`` the last job's id."""
        self._require_open()
        if queue is not None:
            self._check_queue_name(queue)
        if status is not None:
            try:
                status = JobStatus(status)
            except ValueError:
                raise ValidationError(f"unknown status {status!r}") from None
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise ValidationError(f"limit must be an int from 1 to {MAX_LIST_LIMIT}")
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError("cursor must be a job id string")
        return await self.store.jobs_list(
            ListParams(queue=queue, status=status, limit=limit, before=cursor)
        )

    async def history(self, job_id: str) -> list[HistoryEntry]:
        """Every transition of the job, oldest first, with time and message."""
        self._require_open()
        entries = await self.store.job_history(job_id)
        if not entries:
            await self._get(job_id)  # raises JobNotFound
        return entries

    async def rerun(self, job_id: str, *, by: str | None = None) -> Job:
        """Put a completed, failed or cancelled job back to ``queued``, attempts reset.
        InvalidTransition for a job that is still pending or running."""
        self._require_open()
        job, transitions = await self.store.job_rerun(job_id, by, self.clock.now())
        self._engine.committed(transitions)
        return job

    async def purge(
        self,
        *,
        older_than: float | timedelta = 0,
        statuses: Iterable[JobStatus | str] = (
            JobStatus.COMPLETED,
            JobStatus.CANCELLED,
            JobStatus.FAILED,
        ),
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs (and their history) that finished more than
        ``older_than`` ago; returns how many. Only terminal statuses may be given."""
        self._require_open()
        if queue is not None:
            self._check_queue_name(queue)
        age = seconds("older_than", older_than)
        try:
            wanted = frozenset(JobStatus(s) for s in statuses)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if not wanted <= TERMINAL:
            raise ValidationError("only completed, failed or cancelled jobs can be purged")
        return await self._engine.purge(wanted, self.clock.now() - age, queue)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until no job of this runtime's queues is runnable: none queued, running
        or cancelling, and no scheduled one due. Jobs scheduled for later do not count.

        For tests and scripts: enqueue, ``await rt.drain()``, then check the results.
        WaitTimeout after ``timeout`` seconds.
        """
        self._require_open()
        if not self.workers:
            raise RuntimeClosed("drain() needs a runtime with workers")
        busy = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)
        try:
            with anyio.fail_after(timeout):
                while True:
                    # Subscribed before looking: a change after the look wakes us.
                    async with self.bus.subscribe(max_buffer=1) as changes:
                        counts = await self.store.queue_counts()
                        due = await self.store.next_due()
                        idle = not any(
                            counts.get(name, {}).get(status, 0)
                            for name in self.queues
                            for status in busy
                        )
                        if idle and (due is None or due > self.clock.now()):
                            return
                        with contextlib.suppress(EventStreamOverflow, StopAsyncIteration):
                            await changes.__anext__()
        except TimeoutError:
            raise WaitTimeout(f"jobs were still runnable after {timeout}s") from None

    def defer(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` soon, fire-and-forget: not stored, not bounded, no
        retry. A plain function runs in a worker thread. Errors are logged. Use a queue
        for anything that must not be lost."""
        tg = self._require_open()

        async def run() -> None:
            try:
                if inspect.iscoroutinefunction(fn):
                    await fn(*args, **kwargs)
                else:
                    await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
            except Exception:
                log.exception("deferred call %r failed", getattr(fn, "__qualname__", fn))

        tg.start_soon(run)

    def events(
        self,
        queue: str | None = None,
        job_id: str | None = None,
        *,
        statuses: Iterable[JobStatus] | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> EventStream:
        """Live ``queue.job.changed`` events from now on, optionally filtered by queue,
        job and status (a progress report's status is ``running``).

        ``async for event in rt.events(queue="exports"): ...``. See EventStream for the
        buffer bound and overflow policy.
        """
        self._require_open()
        if queue is not None:
            self._check_queue_name(queue)
        return self.bus.subscribe(
            queue=queue, job_id=job_id, statuses=statuses, max_buffer=max_buffer
        )
