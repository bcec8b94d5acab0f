"""The engine: the write paths (group commit), the worker pools, and the loops that keep
leases, progress and cross-process events moving. It knows the Store protocol and the
bus, never a concrete backend and never the server."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._bus import EventBus
from .._clock import Clock
from .._context import JobContext
from .._errors import StoreError
from .._limits import DEFAULT_LIMITS, Limits
from .._logging import get_logger
from .._models import Job, Progress
from .._primitives import new_event
from .._spec import QueueSpec
from .._states import JobStatus
from .._stats import RunStats
from ..store import (
    Finish,
    NewJob,
    Store,
    StoreWrites,
    Transition,
)
from ._batcher import Batcher
from ._committing import CommittingWrites
from ._executor import RunningJob, StopReason, internal_failure
from ._leases import heartbeat_loop, release_all, rescue_loop, rescue_once
from ._owners import new_owner_id
from ._pauses import Pauses
from ._pool import QueuePool, with_lent_claims
from ._progress import ProgressWriter
from ._publisher import Publisher
from ._relay import progress_event
from ._retention import apply_retention, purge, retention_loop
from ._shutdown import stop_workers
from ._ticks import enqueue_ticks, periodic_loop
from ._workers import deregister as deregister_worker
from ._workers import register as register_worker
from ._workers import worker_loop

log = get_logger("conveyor.engine")

PROMOTE_BATCH = 500  # scheduled jobs queued per transaction


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
        retention: dict[JobStatus, float],
        limits: Limits = DEFAULT_LIMITS,
        max_orphanings: int = 3,
        runs: RunStats | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.owner = new_owner_id()
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.max_orphanings = max_orphanings
        self.retention = retention
        self.limits = limits
        # Runs counted for conveyor.metrics (None: not counted): a few integer additions
        # per run, here and in CommittingWrites, read at scrape time.
        self.runs = runs
        self.inserter: Batcher[NewJob, Transition | Job] = Batcher(
            self._write_inserts, name="enqueue"
        )
        self.finisher: Batcher[Finish, None] = Batcher(
            self._write_finishes, name="finish", salvage=self._salvage_finish
        )
        self.pools: dict[str, QueuePool] = {}
        self.pauses = Pauses(store, self.pools, poll_interval)
        self.running: dict[str, RunningJob] = {}
        self.finishing: set[str] = set()  # outcomes handed to the finisher, not yet written
        # Where writes go one at a time (SQLite), a claim would wait for a write of
        # outcomes anyway: that write claims for the pools (see _write_finishes).
        self._claims_with_outcomes = store.writes.one_at_a_time
        self._workers = False  # whether run() started workers (then stop() releases)
        # Every write goes through this: it calls committed() after each commit.
        self.writes: StoreWrites = CommittingWrites(store.writes, self.committed, runs)
        self.progress = ProgressWriter(self.writes, clock, progress_interval)
        self.events = Publisher(
            store,
            bus,
            clock,
            self.running,
            owner=self.owner,
            on_foreign=self._foreign,
            on_queued=self._wake_pools,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
        )
        self._promote_kick = anyio.Event()

    # -- events (published by self.events: see _publisher.py) ----------------------------

    def committed(
        self,
        transitions: Sequence[Transition],
        *,
        as_written: bool = False,
        react_to: Sequence[Transition] | None = None,
    ) -> None:
        """Called after every local write: publish (now or soon), and react at once.
        ``as_written``: the transitions are every history row the write appended, with
        the progress they were written with (see CommittingWrites). ``react_to``: the
        ones to react to, when not all (a write that claimed jobs it queued)."""
        self.events.committed(transitions, as_written=as_written)
        self._react(transitions if react_to is None else react_to)

    def _foreign(self, transitions: list[Transition]) -> None:
        """Other processes' transitions, read by the tail: react to them too, and stop
        the handlers here of the jobs they ask to cancel."""
        self._react(transitions)
        for t in transitions:
            if t.status is JobStatus.CANCELLING:
                self.cancel_local(t.job_id)

    def _wake_pools(self, queues: Iterable[str]) -> None:
        for queue in queues:
            pool = self.pools.get(queue)
            if pool is not None:
                pool.wake()

    def _react(self, transitions: Iterable[Transition]) -> None:
        """Wake workers for queued jobs and the promoter for scheduled ones."""
        for t in transitions:
            if t.status is JobStatus.QUEUED:
                pool = self.pools.get(t.queue)
                if pool is not None:
                    pool.wake()
            elif t.status is JobStatus.SCHEDULED:
                self._promote_kick.set()

    def _on_progress(self, ctx: JobContext) -> None:
        job = ctx.job
        run = self.running.get(job.id)
        if run is None:
            return  # the run already ended; a late report from a stray thread
        self.progress.note(job.id, run.token, ctx.progress)
        # Before its "running" transition is published, a report would overtake it; that
        # event will carry the latest report instead. Once the tail has passed that row it
        # overtakes nothing, even if no one listened then (the row was skipped, not
        # published): a later subscriber, a dashboard opened meanwhile, gets the reports.
        if not run.announced and run.seq <= self.events.seq:
            run.announced = True
        if run.announced and self.bus.wants(job.id):
            event = progress_event(run.seq, job.id, job.queue, ctx.progress, self.clock.now())
            self.bus.publish(event, is_progress=True)

    # -- runs --------------------------------------------------------------------------

    def start_run(self, job: Job, token: str, seq: int, is_async: bool) -> RunningJob:
        run = RunningJob(
            JobContext(job, self._on_progress, self.limits, self.writes.outcome_transaction),
            token,
            seq,
            is_async,
        )
        # The tail may have published its "running" transition already (it reads the
        # claim's commit while the job is on its way to a worker): then its reports are
        # events from the first one, or they would reach subscribers never.
        run.announced = seq <= self.events.seq
        self.running[job.id] = run
        if self.runs is not None:  # (its start and wait were counted with its claim's)
            run.began = self.clock.monotonic()
        return run

    def end_run(self, run: RunningJob) -> None:
        # Its own entry only: a run revoked (see revoke) may still be ending when the
        # same job, stored after all, has begun again here.
        if self.running.get(run.job.id) is run:
            del self.running[run.job.id]
            self.progress.forget(run.job.id)
        if self.runs is not None:
            self.runs.ended(run.job.queue, self.clock.monotonic() - run.began)

    def revoke(self, token: str) -> None:
        """Stop the runs of a claim that did not commit (see QueuePool.claim_failed)."""
        for run in [run for run in self.running.values() if run.token == token]:
            run.stop(StopReason.LEASE_LOST)

    def cancel_local(self, job_id: str) -> None:
        """Stop the job's handler if it runs in this process."""
        run = self.running.get(job_id)
        if run is not None:
            run.stop(StopReason.CANCEL)

    # -- writes: the operations a user asks for, each its store write, the wake-up and
    #    the local effect together ------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        """Store new jobs in the next group commit (see Store.jobs_insert for what comes
        back); the workers that run them are woken when it commits."""
        return await self.inserter.submit(jobs)

    async def insert_in(self, connection: object, jobs: Sequence[NewJob]) -> list[Transition | Job]:
        """Store new jobs in the application's open transaction (PostgreSQL): no group
        commit and no wake-up now, as nothing is committed yet; the commit's notification
        wakes the workers, this runtime's too (see PostgresWrites._insert_in)."""
        return await self.writes.jobs_insert(jobs, connection=connection)

    async def request_cancel(self, job_id: str, queue: str | None) -> Job:
        """Cancel a job (see Store.job_request_cancel), and stop its handler at once if it
        runs in this process."""
        if job_id in self.running:
            # Its reports reach the store coalesced: write them first, or the cancelling
            # event would carry an older report than the events before it.
            await self.progress.flush()
        job, transitions = await self.writes.job_request_cancel(job_id, queue, self.clock.now())
        if any(t.status is JobStatus.CANCELLING for t in transitions):
            self.cancel_local(job_id)
        return job

    async def purge(
        self, statuses: frozenset[JobStatus], finished_before: float, queue: str | None
    ) -> int:
        """Delete finished jobs, a batch per transaction (see _retention.purge)."""
        return await purge(self.store, statuses, finished_before, queue)

    async def rerun(self, job_id: str, by: str | None) -> Job:
        """Put a finished job back to queued (see Store.job_rerun); its queue's workers
        are woken."""
        job, _ = await self.writes.job_rerun(job_id, by, self.clock.now())
        return job

    async def set_paused(self, queue: str, paused: bool, by: str | None) -> None:
        """Pause or resume a queue for the fleet, and here at once."""
        await self.store.queues.set_paused(queue, paused, by, self.clock.now())
        await self.pauses.load()

    def live_progress(self, job_id: str) -> Progress | None:
        """The latest report of a job running here (the store's copy lags behind)."""
        run = self.running.get(job_id)
        return None if run is None else run.ctx.progress

    async def _write_inserts(self, jobs: list[NewJob]) -> list[Transition | Job]:
        """Insert a group commit's jobs, claiming in the same transaction for each idle
        pool of a queue they go to (see QueuePool.lend)."""
        queues = dict.fromkeys(j.queue for j in jobs if j.status is JobStatus.QUEUED)
        return await with_lent_claims(
            [pool for queue in queues if (pool := self.pools.get(queue)) is not None],
            lambda claims, early: self.writes.jobs_insert_claiming(jobs, claims, early=early),
            lambda: self.writes.jobs_insert(jobs),
        )

    async def finish(self, outcome: Finish) -> None:
        """Hand a run's outcome to the finisher; until it is written, this runtime's own
        rescue leaves the job alone (see RescueParams.keep)."""
        self.finishing.add(outcome.job_id)
        await self.finisher.put(outcome)

    async def _write_finishes(self, finishes: list[Finish]) -> list[None]:
        """Write a batch of outcomes, claiming in the same transaction, where writes go one
        at a time, for each idle pool that jobs may be waiting for: the slots these runs
        freed start again sooner, with one commit, not two."""
        now = self.clock.now()
        transitions = await with_lent_claims(
            self.pools.values() if self._claims_with_outcomes else (),
            lambda claims, early: self.writes.jobs_finish_claiming(
                finishes, now, claims, early=early
            ),
            lambda: self.writes.jobs_finish(finishes, now),
            if_waiting=True,
        )
        self._written(f.job_id for f in finishes)
        fenced = len(finishes) - len(transitions)
        if fenced:
            # This worker was too slow (stopped, cut off) and another took the jobs over.
            log.warning(
                "%d outcomes not written: their leases had expired and the jobs were"
                " rescued; the rescued runs decide them",
                fenced,
            )
        return [None] * len(finishes)

    def outcomes_pending(self) -> bool:
        return self._claims_with_outcomes and bool(self.finishing)

    def _written(self, job_ids: Iterable[str]) -> None:
        """These outcomes are no longer waiting to be written; once none is, the pools
        that waited for their write to claim for them look again (PoolHost.finishing)."""
        self.finishing.difference_update(job_ids)
        if self._claims_with_outcomes and not self.finishing:
            for pool in self.pools.values():
                pool.nudge()

    def _salvage_finish(self, finish: Finish, error: BaseException) -> Finish | None:
        """An outcome the store refused still ends its job: failed, saying why, with
        nothing of what was refused. (If even that is refused, the job's lease expires
        and it runs again: never lost, never stuck.)"""
        self._written([finish.job_id])  # should the salvage fail too: rescue it
        bare = internal_failure(finish.job_id, finish.token, error, self.limits)
        return None if finish == bare else bare

    # -- life cycle --------------------------------------------------------------------

    async def run(
        self,
        queues: Sequence[QueueSpec] | None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the write paths and the store tail and, unless ``queues`` is None, the
        worker pools of ``queues`` and the loops that keep leases, schedules and
        retention, until cancelled; started (``tg.start``) once all of them are, so a
        caller may enqueue at once. Stop it with :meth:`stop` before cancelling it."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.inserter.run)
            tg.start_soon(self.finisher.run)
            await tg.start(self.events.run)
            self._workers = queues is not None
            if queues is not None:
                await self.start_workers(tg, queues)
            task_status.started()
            await anyio.sleep_forever()

    async def stop(self, grace: float, forced: anyio.Event, *, force: bool) -> None:
        """Stop gracefully, shielded: no new claims; running jobs get ``grace`` seconds,
        then are cancelled and put back (``force``, or ``forced`` set meanwhile, skips the
        waiting); every write handed over is written, what this runtime still holds is
        released, and every committed transition is published."""
        with anyio.CancelScope(shield=True):
            await stop_workers(self.pools, self.running, grace, forced, force=force)
            self.inserter.close()
            await self.inserter.drain()
            await self.finisher.drain()
            if self._workers:
                await self.progress.flush()
                await release_all(self)
                await deregister_worker(self)
            await self._publish_committed()

    # -- loops -------------------------------------------------------------------------

    async def start_workers(self, tg: TaskGroup, queues: Sequence[QueueSpec]) -> None:
        """Rescue jobs of dead workers on this machine, then start the loops and pools."""
        await rescue_once(self, dead_only=True)
        await apply_retention(self.store, self.retention, self.clock.now())
        await register_worker(self, queues)
        tg.start_soon(heartbeat_loop, self)
        tg.start_soon(rescue_loop, self)
        tg.start_soon(worker_loop, self)
        tg.start_soon(self.progress.run)
        tg.start_soon(self._promote_loop)
        tg.start_soon(retention_loop, self.store, self.retention, self.clock)
        for queue in queues:
            self.pools[queue.name] = QueuePool(self, queue)
        await self.pauses.load()  # before a pool claims: a pause outlives restarts
        tg.start_soon(self.pauses.run)
        for pool in self.pools.values():
            await tg.start(pool.run)
        for ticking in (q.periodic for q in queues if q.periodic is not None):
            now = self.clock.now()
            first_seen = await self.writes.periodic_first_seen(ticking.name, now)
            if ticking.catch_up:  # before returning: missed ticks are there at start
                # Only ticks missed while the queue existed: none on a new database.
                ticks = [
                    t for t in ticking.schedule.latest(now, ticking.catch_up) if t >= first_seen
                ]
                if ticks:
                    await enqueue_ticks(self.inserter, ticking, ticks, self.clock)
            # The first tick is fixed before the runtime counts as started, so a clock
            # moved right after (a test's ManualClock) is seen to pass it.
            first = ticking.schedule.next_after(self.clock.now())
            tg.start_soon(periodic_loop, self.inserter, ticking, self.clock, first)

    async def _publish_committed(self) -> None:
        """Publish every transition committed so far: the stop's last step before the
        task group (and the server with it) goes, so subscribers see the jobs it put back."""
        try:
            await self.events.tail()
        except StoreError as exc:
            log.warning("publishing the last transitions failed: %s", exc)

    async def _promote_loop(self) -> None:
        """Queue scheduled jobs when they fall due: sleep until the earliest is due, and
        wake early when a job is scheduled (here or, through the tail, elsewhere)."""
        while True:
            self._promote_kick = new_event()  # before reading: no wake-up falls between
            try:
                due = await self.store.reads.next_due()
                now = self.clock.now()
                if due is not None and due <= now:
                    await self.writes.jobs_promote(now, PROMOTE_BATCH)
                    continue
            except StoreError as exc:
                log.warning("promoting scheduled jobs failed, will retry: %s", exc)
                due, now = self.clock.now() + 1.0, self.clock.now()
            await self.clock.sleep(math.inf if due is None else due - now, until=self._promote_kick)
