"""A graceful stop of a runtime's workers, in three phases, each cut short by force."""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from .._logging import get_logger
from ._executor import RunningJob, StopReason
from ._pool import QueuePool

log = get_logger("conveyor")

CANCEL_WAIT = 5.0  # seconds for cancelled handlers to stop before their threads are left
ABANDON_WAIT = 5.0  # seconds for abandoned runs to release their jobs


async def stop_workers(
    pools: Mapping[str, QueuePool],
    running: Mapping[str, RunningJob],
    grace: float,
    forced: anyio.Event,
    *,
    force: bool,
) -> None:
    """Stop claiming; let running jobs finish within ``grace`` seconds; then cancel them
    (async handlers stop at once, sync ones at their next check_cancelled) and, if some
    still run a few seconds later, abandon their threads. ``force`` (or ``forced`` set
    meanwhile, by a second signal) skips the waiting."""
    queue_pools = list(pools.values())
    for pool in queue_pools:
        pool.stop_claiming()

    async def all_done() -> None:
        for pool in queue_pools:
            await pool.done.wait()

    async def until_forced(scope: anyio.CancelScope) -> None:
        await forced.wait()
        scope.cancel()

    for phase, limit in (("grace", grace), ("cancel", CANCEL_WAIT), ("abandon", ABANDON_WAIT)):
        if phase == "cancel":
            for run in list(running.values()):
                run.stop(StopReason.SHUTDOWN)
        elif phase == "abandon":
            for run in list(running.values()):
                run.abandon()
        if force or forced.is_set():
            limit = 0 if phase != "abandon" else 1.0
        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(limit) as scope:
                tg.start_soon(until_forced, scope)
                await all_done()
            tg.cancel_scope.cancel()
        if all(pool.done.is_set() for pool in queue_pools):
            return
    log.error("some sync handlers did not stop; their jobs are released for rerun")
