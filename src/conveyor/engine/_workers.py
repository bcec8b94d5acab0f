"""The workers view's engine side: a runtime running workers registers itself (its
queues and their concurrency, its host, pid and version), heartbeats, and leaves when it
stops; and every second it looks for lost workers (a heartbeat older than their lease, or
a process on this machine that is gone) and rescues their jobs at once, rather than
each job only once its own lease expires."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from .._errors import StoreError
from .._logging import get_logger
from .._spec import QueueSpec
from .._version import VERSION
from ..store import WorkerRecord
from ._leases import LeaseHolder, rescue_once
from ._owners import owner_is_dead

log = get_logger("conveyor.engine")

LOOK_EVERY = 1.0  # seconds between looks for lost workers


def is_lost(worker: WorkerRecord, now: float) -> bool:
    """Silent for longer than its lease, or its process (on this machine) is gone."""
    return now - worker.heartbeat_at > worker.lease_ttl or owner_is_dead(worker.id)


async def register(engine: LeaseHolder, queues: Iterable[QueueSpec]) -> None:
    now = engine.clock.now()
    await engine.store.workers.register(
        WorkerRecord(
            id=engine.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues={q.name: q.worker_count for q in queues},
            started_at=now,
            heartbeat_at=now,
            lease_ttl=engine.lease_ttl,
            version=VERSION,
        )
    )


async def worker_loop(engine: LeaseHolder) -> None:
    """Heartbeat every third of the lease; every LOOK_EVERY, rescue lost workers' jobs."""
    beat_every = engine.lease_ttl / 3
    next_beat = engine.clock.monotonic() + beat_every
    while True:
        await engine.clock.sleep(min(LOOK_EVERY, beat_every))
        try:
            if engine.clock.monotonic() >= next_beat:
                next_beat = engine.clock.monotonic() + beat_every
                await engine.store.workers.beat(engine.owner, engine.clock.now())
            now = engine.clock.now()
            lost = {
                w.id
                for w in await engine.store.workers.all()
                if w.id != engine.owner and is_lost(w, now)
            }
        except StoreError as exc:
            log.warning("keeping the workers registry failed, will retry: %s", exc)
            continue
        if lost:
            await rescue_once(engine, dead_only=True, lost=lost)


async def deregister(engine: LeaseHolder) -> None:
    try:
        await engine.store.workers.deregister(engine.owner)
    except StoreError as exc:  # it shows as lost once its heartbeat is old: harmless
        log.warning("leaving the workers registry failed: %s", exc)
