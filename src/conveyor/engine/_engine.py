"""The engine: the write paths (group commit), the worker pools, and the loops that keep
leases, progress and cross-process events moving. It knows the Store protocol and the
bus, never a concrete backend and never the server."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._bus import EventBus
from .._clock import Clock, to_datetime
from .._errors import StoreError
from .._models import NO_PROGRESS, Event, Job
from .._queue import JobContext, Queue
from .._states import JobStatus
from ..store import Finish, NewJob, ProgressWrite, RescueParams, Store, Transition
from ._batcher import Batcher
from ._executor import RunningJob, StopReason
from ._pool import QueuePool

log = logging.getLogger("conveyor.engine")

TAIL_BATCH = 1000  # history rows read per tail query


def new_owner_id() -> str:
    """``host/pid/random``: unique per runtime; host and pid let a restarted worker on the
    same machine tell that a lease's owner process is gone."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def _owner_is_dead(owner: str) -> bool:
    """True only when the owner ran on this host and its process no longer exists."""
    host, _, rest = owner.partition("/")
    pid_text, _, _ = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another runtime in this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False


class Engine:
    """Everything that moves jobs, owned by one Runtime and run in its task group."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        *,
        lease_ttl: float,
        poll_interval: float,
        progress_interval: float,
        max_orphanings: int = 3,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.owner = new_owner_id()
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.max_orphanings = max_orphanings
        self.inserter: Batcher[NewJob, Transition] = Batcher(self._write_inserts, name="enqueue")
        self.finisher: Batcher[Finish, None] = Batcher(self._write_finishes, name="finish")
        self.pools: dict[str, QueuePool] = {}
        self.running: dict[str, RunningJob] = {}
        self._progress: dict[str, ProgressWrite] = {}
        self._progress_dirty = anyio.Event()
        self._tail_seq = 0

    # -- events ------------------------------------------------------------------------

    def publish(self, transitions: Iterable[Transition]) -> None:
        bus = self.bus
        if not bus.has_subscribers:
            return
        for t in transitions:
            if bus.wants(t.job_id):
                progress = t.progress
                if progress is None:
                    run = self.running.get(t.job_id)
                    progress = NO_PROGRESS if run is None else run.ctx.progress
                bus.publish(
                    Event(
                        seq=t.seq,
                        job_id=t.job_id,
                        queue=t.queue,
                        status=t.status,
                        progress=progress,
                        at=to_datetime(t.at),
                        message=t.message,
                    )
                )

    def _on_progress(self, ctx: JobContext) -> None:
        job = ctx.job
        run = self.running.get(job.id)
        if run is None:
            return  # the run already ended; a late report from a stray thread
        self._progress[job.id] = ProgressWrite(job.id, run.token, ctx.progress)
        self._progress_dirty.set()
        if self.bus.wants(job.id):
            self.bus.publish(
                Event(
                    seq=run.seq,
                    job_id=job.id,
                    queue=job.queue,
                    status=job.status,
                    progress=ctx.progress,
                    at=to_datetime(self.clock.now()),
                ),
                is_progress=True,
            )

    # -- runs --------------------------------------------------------------------------

    def start_run(self, job: Job, token: str, seq: int, is_async: bool) -> RunningJob:
        run = RunningJob(JobContext(job, self._on_progress), token, seq, is_async)
        self.running[job.id] = run
        return run

    def end_run(self, run: RunningJob) -> None:
        self.running.pop(run.job.id, None)
        self._progress.pop(run.job.id, None)  # the finish write carries the last report

    def cancel_local(self, job_id: str, seq: int) -> None:
        """Stop the job's handler if it runs in this process."""
        run = self.running.get(job_id)
        if run is not None:
            run.seq = seq
            run.stop(StopReason.CANCEL)

    # -- writes ------------------------------------------------------------------------

    async def _write_inserts(self, jobs: list[NewJob]) -> list[Transition]:
        transitions = await self.store.jobs_insert(jobs)
        self.publish(transitions)
        self._wake_pools(transitions)
        return transitions

    async def _write_finishes(self, finishes: list[Finish]) -> list[None]:
        transitions = await self.store.jobs_finish(finishes, self.clock.now())
        self.publish(transitions)
        return [None] * len(finishes)

    def _wake_pools(self, transitions: Iterable[Transition]) -> None:
        for t in transitions:
            if t.status is JobStatus.QUEUED:
                pool = self.pools.get(t.queue)
                if pool is not None:
                    pool.wake()

    # -- loops -------------------------------------------------------------------------

    async def start_workers(self, tg: TaskGroup, queues: Sequence[Queue[Any]]) -> None:
        """Rescue jobs of dead workers on this machine, then start the loops and pools."""
        await self.rescue_once(dead_only=True)
        tg.start_soon(self._heartbeat_loop)
        tg.start_soon(self._rescue_loop)
        tg.start_soon(self._progress_loop)
        for queue in queues:
            pool = self.pools[queue.name] = QueuePool(self, queue)
            await tg.start(pool.run)

    async def tail_loop(self) -> None:
        """Notice what other processes did: new jobs, cancellations, transitions.

        SQLite has no notifications, so this polls at ``poll_interval`` — a cheap
        in-memory check of the file's change counter, and a read only when it moved.
        """
        self._tail_seq = await self.store.last_seq()
        while True:
            await anyio.sleep(self.poll_interval)
            try:
                if await self.store.changed():
                    await self._tail_once()
            except StoreError as exc:
                log.warning("reading other processes' changes failed: %s", exc)

    async def _tail_once(self) -> None:
        while True:
            transitions, self._tail_seq = await self.store.history_after(self._tail_seq, TAIL_BATCH)
            self.publish(transitions)
            self._wake_pools(transitions)
            for t in transitions:
                if t.status is JobStatus.CANCELLING:
                    self.cancel_local(t.job_id, t.seq)
            if len(transitions) < TAIL_BATCH:
                return

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease_ttl / 3)
            if not self.running:
                continue
            before = set(self.running)
            try:
                held = await self.store.jobs_heartbeat(
                    self.owner, self.clock.now() + self.lease_ttl
                )
            except StoreError as exc:
                log.warning("renewing leases failed, will retry: %s", exc)
                continue
            for job_id in before - held:
                run = self.running.get(job_id)
                if run is not None:
                    log.warning("job %s lost its lease to another worker; stopping it", job_id)
                    run.stop(StopReason.LEASE_LOST)

    async def rescue_once(self, *, dead_only: bool = False) -> None:
        """Return jobs of lost workers to the queue: those whose lease expired, and at
        once those whose owner process on this machine is gone."""
        try:
            dead = [owner for owner in await self.store.lease_owners() if _owner_is_dead(owner)]
            if dead_only and not dead:
                return
            now = self.clock.now()
            transitions = await self.store.jobs_rescue(
                RescueParams(
                    now=now,
                    expired_before=None if dead_only else now,
                    dead_owners=dead,
                    max_orphanings=self.max_orphanings,
                )
            )
        except StoreError as exc:
            log.warning("rescuing orphaned jobs failed, will retry: %s", exc)
            return
        if transitions:
            log.info("rescued %d jobs of lost workers", len(transitions))
        self.publish(transitions)
        self._wake_pools(transitions)

    async def _rescue_loop(self) -> None:
        while True:
            await anyio.sleep(min(self.lease_ttl / 2, 5.0))
            await self.rescue_once()

    async def _progress_loop(self) -> None:
        """Write the latest progress of each running job, at most every interval."""
        while True:
            await self._progress_dirty.wait()
            await anyio.sleep(self.progress_interval)
            self._progress_dirty = anyio.Event()
            await self.flush_progress()

    async def flush_progress(self) -> None:
        writes, self._progress = list(self._progress.values()), {}
        try:
            await self.store.jobs_progress(writes, self.clock.now())
        except StoreError as exc:
            log.warning("writing progress failed, will retry: %s", exc)
            for w in writes:
                self._progress.setdefault(w.job_id, w)
            self._progress_dirty.set()

    async def release_all(self) -> None:
        """Put back whatever this runtime still holds (shutdown's last write)."""
        transitions = await self.store.jobs_release(self.owner, self.clock.now())
        self.publish(transitions)
