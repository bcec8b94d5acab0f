"""One queue's workers in one process: a claimer and ``worker_count`` long-lived tasks.

Worker tasks are reused (one cancel scope per job, not one task per job): starting a task
costs far more than handing an item to a waiting one.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus

from .._clock import Clock
from .._errors import HookFailed, StoreBusy, StoreError, StoreUnavailable
from .._limits import Limits, describe
from .._logging import get_logger
from .._models import Job, RunOutcome
from .._primitives import new_event
from .._spec import QueueSpec
from ..store import Claimed, ClaimParams, EarlyClaims, Finish, StoreWrites, Transition
from ._executor import Handler, RunningJob, drop_transaction, internal_failure, run_job
from ._handoff import HandOff


class PoolHost(Protocol):
    """What a pool needs of the engine that runs it (conveyor.engine.Engine is one): its
    identity and settings, the writes that publish what they commit (see
    _committing.py), and the three calls around each run."""

    owner: str
    lease_ttl: float
    limits: Limits
    clock: Clock
    writes: StoreWrites

    def outcomes_pending(self) -> bool:
        """Whether outcomes wait to be written whose write will claim for the pools with
        slots free (Engine._write_finishes): a pool then leaves its claim to it."""
        ...

    async def finish(self, outcome: Finish) -> None: ...

    def start_run(self, job: Job, token: str, seq: int, is_async: bool) -> RunningJob: ...

    def end_run(self, run: RunningJob) -> None: ...

    def revoke(self, token: str) -> None:
        """Stop the runs of the claim ``token`` names, which did not commit: as if their
        lease were lost, they write nothing."""
        ...


log = get_logger("conveyor.engine")

MAX_CLAIM = 500  # jobs per claim transaction
SHUTDOWN_HOOK_LIMIT = 30.0  # seconds an on_shutdown hook may take before it is cancelled
CLAIM_RETRY_DELAY = 0.5  # after a failed claim (store busy or unavailable)


class QueuePool:
    """Claims jobs of one queue while it has free slots, and runs them.

    The claimer sleeps until woken: by an enqueue in this process, by the store tailer
    seeing jobs queued elsewhere, or by a slot freeing while more jobs may be waiting.
    It claims at most as many jobs as there are free slots, so a claimed job starts at
    once, and the hand-off buffer (``worker_count`` items) is never full.
    """

    def __init__(self, engine: PoolHost, queue: QueueSpec) -> None:
        self.engine = engine
        self.name = queue.name
        self.capacity = queue.worker_count
        self.handler = Handler(queue, engine.limits)
        self.on_startup = queue.on_startup
        self.on_shutdown = queue.on_shutdown
        self.after_run = queue.after_run
        self.free = self.capacity
        self.rate_limit = queue.rate_limit
        self._starts: deque[float] = deque()  # claim times inside the rate-limit window
        self.stopping = False
        self.paused = False  # fleet-wide (see _pauses.py): claim nothing meanwhile
        self._maybe_more = True  # jobs may be waiting: claim when a slot is free
        self._claiming = False  # a claim of the claimer's own is being written
        self._lent: ClaimParams | None = None  # the claim an enqueue makes for it (lend)
        self._taken_early = False  # the lent claim's jobs went to workers before its commit
        self._handoff: HandOff | None = None  # while run() runs
        self._kick = anyio.Event()
        self._claim_scope = anyio.CancelScope()
        self._lost_claims: list[str] = []  # tokens of claims that may have committed unseen
        self.done = anyio.Event()

    def wake(self) -> None:
        """New jobs may be queued: claim as soon as a slot is free."""
        self._maybe_more = True
        self._kick.set()

    def nudge(self) -> None:
        """Look again whether to claim (outcomes were written: see outcomes_pending)."""
        self._kick.set()

    def set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            log.info("queue %r %s", self.name, "paused" if paused else "resumed")
        self.paused = paused
        if not paused:
            self.wake()

    def stop_claiming(self) -> None:
        self.stopping = True
        self._claim_scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim and run until stopped; started once the queue's on_startup hook
        returned (HookFailed if it raised) and its workers wait for jobs."""
        if self.on_startup is not None:
            try:
                await self.on_startup()
            except Exception as exc:
                raise HookFailed(self.name, "on_startup", describe(exc)) from exc
        handoff = self._handoff = HandOff()
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.capacity):
                    tg.start_soon(self._work, handoff)
                task_status.started()
                try:
                    with self._claim_scope:
                        await self._claim_forever(handoff)
                finally:
                    handoff.close()
        finally:
            self.done.set()
            if self.on_shutdown is not None:
                await self._shut_down(self.on_shutdown)

    async def _shut_down(self, hook: Callable[[], Awaitable[None]]) -> None:
        # Shielded: it also runs when the runtime is torn down (or failed to start).
        with anyio.move_on_after(SHUTDOWN_HOOK_LIMIT, shield=True) as scope:
            try:
                await hook()
            except Exception:
                log.exception("on_shutdown() of queue %r failed", self.name)
        if scope.cancelled_caught:
            log.error("on_shutdown() of queue %r cut off after %gs", self.name, SHUTDOWN_HOOK_LIMIT)

    async def _after_run(self, job: Job, outcome: Finish | None) -> None:
        assert self.after_run is not None
        ended = (
            RunOutcome(status=None)
            if outcome is None
            else RunOutcome(status=outcome.status, error=outcome.error)
        )
        try:
            await self.after_run(job, ended)
        except Exception:
            log.exception("after_run() of queue %r failed for job %s", self.name, job.id)

    async def _claim_forever(self, handoff: HandOff) -> None:
        engine = self.engine
        while True:
            while (
                self._lent is not None
                or engine.outcomes_pending()
                or not (self._maybe_more and self.free > 0 and not self.paused)
            ):
                await self._kick.wait()
                self._kick = new_event()
            allowed, wait = self._allowance()
            if allowed == 0:
                await engine.clock.sleep(wait)  # until the oldest start leaves the window
                continue
            params = self._claim_params(allowed)
            self._claiming = True
            try:
                await self._unclaim_lost()
                jobs, transitions = await engine.writes.jobs_claim(params)
            except StoreError as exc:
                log.warning("claiming from queue %r failed, retrying: %s", self.name, exc)
                self._claim_failed(params, exc)
                await anyio.sleep(CLAIM_RETRY_DELAY)
                continue
            finally:
                self._claiming = False
            self._take(params, jobs, transitions, handoff)

    # A write of enqueues or of outcomes claims for an idle pool (with_lent_claims): the
    # jobs it queues, or those waiting for the slots its outcomes freed, would be claimed
    # right after it commits, by a write of their own; claimed in its transaction
    # instead, they start a commit and two thread hops sooner. While lent, the claimer
    # claims nothing itself: the lent claim is its claim.

    def lend(self, *, if_waiting: bool = False) -> ClaimParams | None:
        """The claim this pool would make next, for another write to make in its
        transaction, if the pool is idle with free slots (and, ``if_waiting``, jobs may
        be waiting for them), else None; then claimed() or claim_failed() with its
        outcome."""
        if (
            self._handoff is None
            or self._lent is not None
            or self._claiming
            or self.stopping
            or self.paused
            or self.free <= 0
            or (if_waiting and not self._maybe_more)
        ):
            return None
        allowed, _ = self._allowance()
        if allowed == 0:
            return None
        self._lent = self._claim_params(allowed)
        return self._lent

    def claimed_early(
        self, params: ClaimParams, jobs: list[Job], transitions: list[Transition]
    ) -> None:
        """The lent claim's write holds its jobs and is committing: run them now, while
        the commit is made durable; claimed() confirms them, claim_failed() revokes them.
        Their "running" events wait for the commit like every event, and their progress
        events wait for those (Engine.start_run)."""
        assert params is self._lent
        assert self._handoff is not None
        self._taken_early = True
        self._take(params, jobs, transitions, self._handoff)

    def claimed(self, params: ClaimParams, jobs: list[Job], transitions: list[Transition]) -> None:
        """The lent claim committed: run what it claimed (put back unrun if stopping),
        unless claimed_early() did."""
        assert params is self._lent
        assert self._handoff is not None
        self._lent = None
        if not self._taken_early:
            self._take(params, jobs, transitions, self._handoff)
        self._taken_early = False
        self._kick.set()

    def claim_failed(self, params: ClaimParams, exc: BaseException) -> None:
        """The lent claim's write failed: claim again, on its own. Jobs it handed out
        early were never claimed: those not started yet never start, and the others
        stop, writing nothing (their outcomes would be fenced out anyway)."""
        assert params is self._lent
        assert self._handoff is not None
        self._lent = None
        if self._taken_early:
            self._taken_early = False
            self.free += self._handoff.discard(params.token)
            self.engine.revoke(params.token)
        self._claim_failed(params, exc)
        self._kick.set()

    def _claim_params(self, allowed: int) -> ClaimParams:
        self._maybe_more = False  # until the claim shows otherwise, or a wake says so
        engine = self.engine
        now = engine.clock.now()
        return ClaimParams(
            queue=self.name,
            limit=min(self.free, MAX_CLAIM, allowed),
            owner=engine.owner,
            token=secrets.token_hex(8),
            now=now,
            lease_expires_at=now + engine.lease_ttl,
        )

    def _claim_failed(self, params: ClaimParams, exc: BaseException) -> None:
        if isinstance(exc, StoreUnavailable) and exc.outcome_unknown:
            # It may have committed: jobs may be leased under this token that no worker
            # runs. Put them back once the store answers again.
            self._lost_claims.append(params.token)
        self._maybe_more = True

    def _take(
        self,
        params: ClaimParams,
        jobs: list[Job],
        transitions: list[Transition],
        handoff: HandOff,
    ) -> None:
        if len(jobs) == params.limit:
            self._maybe_more = True
        self.free -= len(jobs)
        if self.rate_limit is not None:
            self._starts.extend([self.engine.clock.monotonic()] * len(jobs))
        for job, transition in zip(jobs, transitions, strict=True):
            handoff.put((job, transition.seq, params.token))

    async def _unclaim_lost(self) -> None:
        """Put back the jobs of claims whose answer was lost (see Store.jobs_unclaim)."""
        if self._lost_claims:
            now = self.engine.clock.now()
            transitions = await self.engine.writes.jobs_unclaim(self._lost_claims, now)
            self._lost_claims.clear()
            if transitions:
                log.info("put back %d jobs of claims whose answer was lost", len(transitions))

    def _allowance(self) -> tuple[int, float]:
        """How many jobs may start now under the rate limit, and if none, how long until
        one may."""
        if self.rate_limit is None:
            return MAX_CLAIM, 0.0
        count, window = self.rate_limit
        now = self.engine.clock.monotonic()
        starts = self._starts
        while starts and starts[0] <= now - window:
            starts.popleft()
        allowed = count - len(starts)
        return (allowed, 0.0) if allowed > 0 else (0, starts[0] + window - now)

    async def _work(self, handoff: HandOff) -> None:
        engine = self.engine
        while (item := await handoff.get()) is not None:
            job, seq, token = item
            try:
                if self.stopping:  # claimed, never started: put it straight back
                    await engine.finish(
                        Finish.requeued(job.id, token, "requeued: worker shutting down")
                    )
                    continue
                run = engine.start_run(job, token, seq, self.handler.is_async)
                decided: Finish | None = None
                try:
                    outcome, decided = await run_job(self.handler, run, engine.clock)
                except Exception as exc:  # conveyor's own bug: this job fails, the rest go on
                    log.exception("internal error while running job %s", job.id)
                    outcome = internal_failure(job.id, token, exc, engine.limits, run.ctx.progress)
                finally:
                    await drop_transaction(run)
                    engine.end_run(run)
                if outcome is not None:
                    await engine.finish(outcome)
                if self.after_run is not None:
                    # A completion settle() committed with the handler's writes: as decided.
                    await self._after_run(job, outcome or decided)
            finally:
                self.free += 1
                self._kick.set()


R = TypeVar("R")


async def with_lent_claims(
    pools: Iterable[QueuePool],
    write: Callable[[list[ClaimParams], EarlyClaims], Awaitable[tuple[R, list[Claimed]]]],
    alone: Callable[[], Awaitable[R]],
    *,
    if_waiting: bool = False,
) -> R:
    """Make ``write`` with the claims ``pools`` lend (see QueuePool.lend), and hand each
    pool what its claim took, as early as the store tells it (see
    StoreWrites.jobs_insert_claiming); ``alone``, the write without claims, when none
    lends one, or when the store refused the write with them (not for a passing reason:
    a claim may be what it refused, a row it cannot read, which the pool's own claim
    then meets)."""
    lent = [
        (pool, params) for pool in pools if (params := pool.lend(if_waiting=if_waiting)) is not None
    ]
    if not lent:
        return await alone()

    def early(claimed: list[Claimed]) -> None:
        for (pool, params), (jobs, transitions) in zip(lent, claimed, strict=True):
            pool.claimed_early(params, jobs, transitions)

    try:
        result, claimed = await write([params for _, params in lent], early)
    except BaseException as exc:
        for pool, params in lent:
            pool.claim_failed(params, exc)
        if isinstance(exc, Exception) and not isinstance(exc, StoreBusy | StoreUnavailable):
            return await alone()
        raise
    for (pool, params), (jobs, transitions) in zip(lent, claimed, strict=True):
        pool.claimed(params, jobs, transitions)
    return result
