"""Keeping leases: renewing what this runtime runs, rescuing what lost workers held, and
releasing what it still holds when it stops. Functions of a LeaseHolder (the Engine)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from .._clock import Clock
from .._errors import StoreError
from .._logging import get_logger
from ..store import RescueParams, Store, StoreWrites
from ._executor import RunningJob, StopReason
from ._owners import owner_is_dead

log = get_logger("conveyor.engine")


class LeaseHolder(Protocol):
    """What lease keeping needs of the engine: who it is, what it runs and is still
    writing, the store to read, and the writes that publish what they commit (see
    _committing.py)."""

    store: Store
    writes: StoreWrites
    clock: Clock
    owner: str
    lease_ttl: float
    max_orphanings: int
    running: dict[str, RunningJob]
    finishing: set[str]


async def heartbeat_loop(engine: LeaseHolder) -> None:
    """Renew the leases of the jobs running here, every third of the lease; stop the
    handler of any whose lease another worker took."""
    while True:
        await engine.clock.sleep(engine.lease_ttl / 3)
        if not engine.running:
            continue
        before = set(engine.running)
        try:
            held = await engine.writes.jobs_heartbeat(
                engine.owner, before, engine.clock.now() + engine.lease_ttl
            )
        except StoreError as exc:
            log.warning("renewing leases failed, will retry: %s", exc)
            continue
        for job_id in before - held:
            run = engine.running.get(job_id)
            if run is not None:
                log.warning("job %s lost its lease to another worker; stopping it", job_id)
                run.stop(StopReason.LEASE_LOST)


async def rescue_once(
    engine: LeaseHolder, *, dead_only: bool = False, lost: Collection[str] = ()
) -> None:
    """Return jobs of lost workers to the queue: those whose lease expired, and at once
    those whose owner process on this machine is gone or that the workers registry shows
    ``lost``; never what this runtime still runs or is still writing the outcome of."""
    try:
        dead = [
            owner
            for owner in await engine.store.reads.lease_owners()
            if owner in lost or owner_is_dead(owner)
        ]
        if dead_only and not dead:
            return
        now = engine.clock.now()
        transitions = await engine.writes.jobs_rescue(
            RescueParams(
                now=now,
                expired_before=None if dead_only else now,
                dead_owners=dead,
                max_orphanings=engine.max_orphanings,
                keep=[*engine.running, *engine.finishing],
            )
        )
    except StoreError as exc:
        log.warning("rescuing orphaned jobs failed, will retry: %s", exc)
        return
    if transitions:
        log.info("rescued %d jobs of lost workers", len(transitions))


async def rescue_loop(engine: LeaseHolder) -> None:
    while True:
        await engine.clock.sleep(min(engine.lease_ttl / 2, 5.0))
        await rescue_once(engine)


async def release_all(engine: LeaseHolder) -> None:
    """Put back whatever this runtime still holds (a stop's last write)."""
    await engine.writes.jobs_release(engine.owner, engine.clock.now())
