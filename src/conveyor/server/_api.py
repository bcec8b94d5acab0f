"""What the server calls on the runtime it serves: the same operations a user calls,
named here as a Protocol so that the server depends on them, not on Runtime (the
runtime imports the server, never the other way round)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Protocol

from .._bus import EventStream
from .._models import EnqueueOptions, Event, HistoryEntry, Job, QueueState, WorkerState
from .._states import JobStatus
from .._stats import RuntimeStats


class ServedRuntime(Protocol):
    """The operations of conveyor.Runtime that the server uses (see their docstrings),
    and its stats (the server counts its websocket clients there; GET /metrics reads
    them through conveyor.metrics)."""

    stats: RuntimeStats

    async def submit(
        self, queue: str, payloads: Iterable[Any], options: EnqueueOptions
    ) -> list[Job]: ...

    async def job(self, job_id: str) -> Job: ...

    async def job_status(self, queue: str, job_id: str) -> Job: ...

    async def list_jobs(
        self,
        queue: str | None = ...,
        status: JobStatus | str | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
        *,
        tags: Iterable[str] | None = ...,
        meta: Mapping[str, str] | None = ...,
    ) -> list[Job]: ...

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]: ...

    async def history(self, job_id: str) -> list[HistoryEntry]: ...

    async def cancel(self, job_id: str) -> Job: ...

    async def request_job_cancel(self, queue: str, job_id: str) -> Job: ...

    async def rerun(self, job_id: str, *, by: str | None = ...) -> Job: ...

    async def queue_states(self) -> list[QueueState]: ...

    async def workers(self) -> list[WorkerState]: ...

    async def cancel_matching(
        self,
        *,
        queue: str | None = ...,
        statuses: Iterable[JobStatus | str] | None = ...,
        created_by: str | None = ...,
        older_than: float | timedelta | None = ...,
    ) -> int: ...

    async def rerun_matching(
        self,
        *,
        queue: str | None = ...,
        statuses: Iterable[JobStatus | str] | None = ...,
        created_by: str | None = ...,
        older_than: float | timedelta | None = ...,
        by: str | None = ...,
    ) -> int: ...

    async def pause(self, queue: str, *, by: str | None = ...) -> QueueState: ...

    async def resume(self, queue: str) -> QueueState: ...

    async def purge(
        self,
        *,
        older_than: float | timedelta = ...,
        statuses: Iterable[JobStatus | str] = ...,
        queue: str | None = ...,
    ) -> int: ...

    def events(
        self,
        queue: str | None = ...,
        job_id: str | None = ...,
        *,
        statuses: Iterable[JobStatus] | None = ...,
        max_buffer: int = ...,
    ) -> EventStream: ...

    async def missed_events(
        self,
        since: int,
        *,
        queue: str | None = ...,
        job_id: str | None = ...,
        limit: int = ...,
    ) -> list[Event]: ...
