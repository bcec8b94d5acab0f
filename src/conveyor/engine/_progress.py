"""Coalesced progress writes: handlers may report thousands of times a second, but the
store gets each running job's latest report at most once per ``interval`` (events go out
at once regardless, see Engine._on_progress). The pending reports are one per running
job, so the buffer is bounded by the pools' sizes: a newer report replaces an older one.
"""

from __future__ import annotations

import anyio

from .._clock import Clock
from .._errors import StoreBusy, StoreUnavailable
from .._logging import get_logger
from .._models import Progress
from ..store import ProgressWrite, StoreWrites

log = get_logger("conveyor.engine")


class ProgressWriter:
    def __init__(self, writes: StoreWrites, clock: Clock, interval: float) -> None:
        self.writes = writes
        self.clock = clock
        self.interval = interval
        self._pending: dict[str, ProgressWrite] = {}
        self._dirty = anyio.Event()

    def note(self, job_id: str, token: str, progress: Progress) -> None:
        """The latest report of a running job (its lease ``token`` fences the write)."""
        self._pending[job_id] = ProgressWrite(job_id, token, progress)
        self._dirty.set()

    def forget(self, job_id: str) -> None:
        """The run ended: its finish write carries the last report."""
        self._pending.pop(job_id, None)

    async def run(self) -> None:
        """Write the pending reports, at most every interval."""
        while True:
            await self._dirty.wait()
            await anyio.sleep(self.interval)
            self._dirty = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write every pending report now. A passing store error keeps them for the
        next round; a refusal is narrowed down to the report the store refuses."""
        writes, self._pending = list(self._pending.values()), {}
        try:
            await self.writes.jobs_progress(writes, self.clock.now())
        except (StoreBusy, StoreUnavailable) as exc:
            log.warning("writing progress failed, will retry: %s", exc)
            for w in writes:
                self._pending.setdefault(w.job_id, w)
            self._dirty.set()
        except Exception as exc:  # something the store refused: keep the other reports
            log.warning("writing progress refused (%s); writing each report alone", exc)
            for w in writes:
                try:
                    await self.writes.jobs_progress([w], self.clock.now())
                except Exception as alone:
                    log.error("dropped a progress report of job %s: %s", w.job_id, alone)
