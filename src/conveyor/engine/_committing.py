"""The store's writes as the engine makes them: each write that commits transitions hands
them to ``committed`` (wake the workers of queued jobs, the promoter for scheduled ones,
and publish them) before it returns, so no caller can forget to; the runs claimed,
their outcomes and the rescues are counted in ``runs`` too (for conveyor.metrics), from
what was committed. Writes that commit no transition pass straight through.

The hot path's writes (insert, claim, finish) return each history row they appended with
the progress the job was left with, as the tail would read it back: ``committed(...,
as_written=True)`` says so, and the engine may publish them as they are (see
Publisher.committed). The others' rows are read back by the tail."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from .._models import Job
from .._stats import RunStats
from ..store import (
    Claimed,
    ClaimParams,
    EarlyClaims,
    Finish,
    JobMatch,
    NewJob,
    OutcomeTransaction,
    ProgressWrite,
    PurgeParams,
    RescueParams,
    StoreWrites,
    Transition,
)


class Committed(Protocol):
    """Engine.committed: told of every commit's transitions (see the module docstring)."""

    def __call__(
        self,
        transitions: Sequence[Transition],
        *,
        as_written: bool = False,
        react_to: Sequence[Transition] | None = None,
    ) -> None: ...


class CommittingWrites:
    """A StoreWrites over the store's own, calling ``committed`` after each commit and
    counting in ``runs`` (None: nothing counted) the runs claims started and what runs'
    outcomes and rescues wrote."""

    def __init__(
        self,
        writes: StoreWrites,
        committed: Committed,
        runs: RunStats | None = None,
    ) -> None:
        self._writes = writes
        self._committed = committed
        self._runs = runs
        self.one_at_a_time = writes.one_at_a_time

    async def jobs_insert(
        self, jobs: Sequence[NewJob], *, connection: object | None = None
    ) -> list[Transition | Job]:
        results = await self._writes.jobs_insert(jobs, connection=connection)
        if connection is None:  # else nothing is committed yet: the commit will notify
            self._committed([r for r in results if isinstance(r, Transition)], as_written=True)
        return results

    async def jobs_insert_claiming(
        self,
        jobs: Sequence[NewJob],
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition | Job], list[Claimed]]:
        results, claimed = await self._writes.jobs_insert_claiming(jobs, claims, early=early)
        inserted = [r for r in results if isinstance(r, Transition)]
        started = [t for _, transitions in claimed for t in transitions]
        # The jobs the same commit queued and claimed wake no worker: they have theirs.
        taken = {t.job_id for t in started}
        left = [t for t in inserted if t.job_id not in taken]
        self._committed([*inserted, *started], as_written=True, react_to=left)
        self._count_claims(claims, claimed)
        return results, claimed

    async def jobs_finish_claiming(
        self,
        finishes: Sequence[Finish],
        now: float,
        claims: Sequence[ClaimParams],
        *,
        early: EarlyClaims | None = None,
    ) -> tuple[list[Transition], list[Claimed]]:
        finished, claimed = await self._writes.jobs_finish_claiming(
            finishes, now, claims, early=early
        )
        started = [t for _, transitions in claimed for t in transitions]
        self._committed([*finished, *started], as_written=True)
        if self._runs is not None:
            self._runs.finished(finished)
        self._count_claims(claims, claimed)
        return finished, claimed

    def _count_claims(self, claims: Sequence[ClaimParams], claimed: list[Claimed]) -> None:
        if self._runs is not None:
            for params, (jobs, _) in zip(claims, claimed, strict=True):
                self._runs.claimed(params.queue, jobs, params.now)

    async def jobs_claim(self, params: ClaimParams) -> Claimed:
        jobs, transitions = await self._writes.jobs_claim(params)
        self._committed(transitions, as_written=True)
        self._count_claims([params], [(jobs, transitions)])
        return jobs, transitions

    async def jobs_finish(self, finishes: Sequence[Finish], now: float) -> list[Transition]:
        transitions = await self._writes.jobs_finish(finishes, now)
        self._committed(transitions, as_written=True)
        if self._runs is not None:
            self._runs.finished(transitions)
        return transitions

    async def jobs_rescue(self, params: RescueParams) -> list[Transition]:
        transitions = self._done(await self._writes.jobs_rescue(params))
        if self._runs is not None:
            self._runs.rescued(transitions)
        return transitions

    async def jobs_release(self, owner: str, now: float) -> list[Transition]:
        return self._done(await self._writes.jobs_release(owner, now))

    async def jobs_unclaim(self, tokens: Sequence[str], now: float) -> list[Transition]:
        return self._done(await self._writes.jobs_unclaim(tokens, now))

    async def jobs_promote(self, now: float, limit: int) -> list[Transition]:
        return self._done(await self._writes.jobs_promote(now, limit))

    async def job_request_cancel(
        self, job_id: str, queue: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        job, transitions = await self._writes.job_request_cancel(job_id, queue, now)
        self._committed(transitions)
        return job, transitions

    async def job_rerun(
        self, job_id: str, by: str | None, now: float
    ) -> tuple[Job, list[Transition]]:
        job, transitions = await self._writes.job_rerun(job_id, by, now)
        self._committed(transitions)
        return job, transitions

    async def jobs_cancel_matching(self, match: JobMatch, now: float) -> list[Transition]:
        return self._done(await self._writes.jobs_cancel_matching(match, now))

    async def jobs_rerun_matching(
        self, match: JobMatch, by: str | None, now: float
    ) -> list[Transition]:
        return self._done(await self._writes.jobs_rerun_matching(match, by, now))

    async def outcome_transaction(self) -> OutcomeTransaction:
        return _CommittingTransaction(
            await self._writes.outcome_transaction(), self._committed, self._runs
        )

    def _done(self, transitions: list[Transition]) -> list[Transition]:
        self._committed(transitions)
        return transitions

    # -- no transitions: straight through -----------------------------------------------

    async def jobs_progress(self, writes: Sequence[ProgressWrite], now: float) -> None:
        await self._writes.jobs_progress(writes, now)

    async def jobs_heartbeat(
        self, owner: str, job_ids: Collection[str], lease_expires_at: float
    ) -> set[str]:
        return await self._writes.jobs_heartbeat(owner, job_ids, lease_expires_at)

    async def periodic_first_seen(self, queue: str, now: float) -> float:
        return await self._writes.periodic_first_seen(queue, now)

    async def jobs_purge(self, params: PurgeParams) -> int:
        return await self._writes.jobs_purge(params)


class _CommittingTransaction:
    """An OutcomeTransaction calling ``committed`` once it committed (and counting the
    outcome in ``runs``)."""

    def __init__(
        self,
        inner: OutcomeTransaction,
        committed: Committed,
        runs: RunStats | None,
    ) -> None:
        self._inner = inner
        self._committed = committed
        self._runs = runs

    @property
    def connection(self) -> object:
        return self._inner.connection

    async def commit(self, finish: Finish, now: float) -> list[Transition]:
        transitions = await self._inner.commit(finish, now)
        self._committed(transitions)
        if self._runs is not None:
            self._runs.finished(transitions)
        return transitions

    async def rollback(self) -> None:
        await self._inner.rollback()
