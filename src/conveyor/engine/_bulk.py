"""Bulk operations: cancel or rerun every job matching a filter, in bounded transactions
(a batch of JobMatch.limit jobs each, so no transaction holds thousands of rows locked
while workers run), until a batch finds none left."""

from __future__ import annotations

from msgspec.structs import replace

from .._states import JobStatus
from ..store import JobMatch
from ._engine import Engine


async def cancel_matching(engine: Engine, match: JobMatch) -> int:
    """Cancel every matching job (waiting ones at once, running ones cancelling, their
    handlers here stopped at once, elsewhere when their runtime hears); how many."""
    total = 0
    while transitions := await engine.writes.jobs_cancel_matching(match, engine.clock.now()):
        total += len(transitions)
        for t in transitions:
            if t.status is JobStatus.CANCELLING:
                engine.cancel_local(t.job_id)
    return total


async def rerun_matching(engine: Engine, match: JobMatch, by: str | None) -> int:
    """Rerun every matching ended job once (one that fails again meanwhile is not taken
    again: only jobs last changed before this call began); how many."""
    once = replace(match, as_of=engine.clock.now())
    total = 0
    while transitions := await engine.writes.jobs_rerun_matching(once, by, engine.clock.now()):
        total += len(transitions)
    return total
