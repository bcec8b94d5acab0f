"""The blocking client: conveyor.client's methods for code without an event loop, on
websockets' own threading client (``websockets.sync.client``). The requests and the
reading of replies are conveyor._calls', shared with the async client; this module only
moves bytes and waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from websockets.exceptions import ConnectionClosed

from .._calls import (
    MAX_MESSAGE_BYTES,
    Call,
    Calls,
    EventFeed,
    backoff_bounds,
    checked_token,
    message_size,
    websocket_url,
)
from .._errors import ServerError, WaitTimeout
from .._limits import bounded_seconds, name, optional_seconds
from .._models import EnqueueOptions, HistoryEntry, Job, QueueState, WorkerState
from .._states import TERMINAL, JobStatus
from ._closing import Closing
from ._connection import RequestConnection, open_for_requests
from ._events import Events

__all__ = ("Client",)

T = TypeVar("T")


class Client(Closing):
    """conveyor.client.Client's methods, blocking: for Django and Flask views, scripts
    and notebooks. ``with Client("ws://127.0.0.1:8765") as client: client.enqueue(...)``.

    Safe to share between threads: one client holds one connection (opened on first
    use, re-opened when it drops), and requests from several threads go out on it at
    once, each waiting for its own reply; a web app keeps one client for all of its
    request threads. Each ``events()`` iterator has a connection of its own.

    Every blocking call is bounded: a request waits at most ``request_timeout``
    seconds to connect and as long again for its reply (then ServerError with code
    ``timeout``; an enqueue that timed out may still have been stored), ``wait()`` its
    ``timeout``, and an events iterator its ``timeout`` for each next event. Errors are
    the async client's: ValidationError before anything is sent, the server's refusals
    as their ConveyorError (QueueNotFound, JobNotFound, InvalidTransition, ...), and
    ServerError for a connection refused (``http_401``), unreachable or closed.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        request_timeout: float = 10.0,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = websocket_url(url)
        self.token = checked_token(token)
        self.request_timeout = bounded_seconds("request_timeout", request_timeout)
        self.min_backoff, self.max_backoff = backoff_bounds(min_backoff, max_backoff)
        self.max_message_bytes = message_size(max_message_bytes)
        self._calls = Calls()
        self._lock = threading.Lock()  # guards _conn and _closed; held while connecting
        self._conn: RequestConnection | None = None
        self._closed = False

    def __enter__(self) -> Self:
        self._connection()  # connect now: a wrong URL or token fails here
        return self

    def close(self) -> None:
        """Close the connection; later calls raise ServerError with code ``closed``."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> RequestConnection:
        """The request connection, (re-)opened if there is none or it dropped."""
        with self._lock:
            if self._closed:
                raise ServerError("closed", "this client was closed")
            if self._conn is None or not self._conn.is_open:
                self._conn = RequestConnection(open_for_requests(self, self.request_timeout))
            return self._conn

    def _send(self, call: Call[T]) -> T:
        """Send a request and wait for its reply, read as the call's result."""
        conn = self._connection()
        pending = conn.replies.expect(call)
        try:
            conn.ws.send(call.message, text=True)
        except ConnectionClosed as exc:
            conn.replies.forget(call.id)
            raise ServerError("disconnected", str(exc)) from exc
        if not pending.done.wait(self.request_timeout):
            conn.replies.forget(call.id)
            raise ServerError(
                "timeout",
                f"no reply within {self.request_timeout}s (what was asked may still be done)",
            )
        return pending.outcome(call)

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> Job:
        """As ``Runtime.enqueue`` (``timeout`` is the job's run time limit): options
        left out take the queue's defaults; what the Runtime would refuse whatever its
        queue is refused before anything is sent (the same ValidationError)."""
        options = EnqueueOptions(
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
            unique_key=unique_key,
            meta=meta,  # type: ignore[arg-type]  # any Mapping: checked into a dict
            tags=tags,  # type: ignore[arg-type]  # any iterable: checked into a list
        )
        return self._send(self._calls.enqueue(queue, payload, options))

    def job(self, job_id: str) -> Job:
        """The current record of a job of any queue. JobNotFound if there is none."""
        return self._send(self._calls.job(job_id))

    def job_status(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.job_status``: JobNotFound unless it is a job of ``queue``."""
        return self._send(self._calls.job_status(queue, job_id))

    def list_jobs(
        self,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        created_by: str | None = None,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> list[Job]:
        """Newest first; for the next page pass ``cursor=`` the last job's id. As
        ``Runtime.list_jobs``: ``created_by`` (exactly), ``tags`` and ``meta`` keep the jobs
        having all of them."""
        call = self._calls.list_jobs(
            queue, status, limit, cursor, created_by=created_by, tags=tags, meta=meta
        )
        return self._send(call)

    def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        """Jobs per status for each queue the server knows (zeros included)."""
        return self._send(self._calls.queue_counts())

    def history(self, job_id: str) -> list[HistoryEntry]:
        """Every transition of the job, oldest first."""
        return self._send(self._calls.history(job_id))

    def cancel(self, job_id: str) -> Job:
        """As ``Runtime.cancel``: cancel a job of any queue, found by id."""
        return self._send(self._calls.cancel(job_id))

    def request_job_cancel(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.request_job_cancel``: JobNotFound unless it is a job of ``queue``."""
        return self._send(self._calls.request_job_cancel(queue, job_id))

    def rerun(self, job_id: str, *, by: str | None = None) -> Job:
        """As ``Runtime.rerun``: a finished job back to queued."""
        return self._send(self._calls.rerun(job_id, by))

    def cancel_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """As ``Runtime.cancel_matching``: cancel every job matching; how many."""
        return self._send(self._calls.cancel_matching(queue, statuses, created_by, older_than))

    def count_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """As ``Runtime.count_matching``: how many jobs a bulk operation would take."""
        return self._send(self._calls.count_matching(queue, statuses, created_by, older_than))

    def rerun_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
        by: str | None = None,
    ) -> int:
        """As ``Runtime.rerun_matching``: rerun every ended job matching once; how many."""
        call = self._calls.rerun_matching(queue, statuses, created_by, older_than, by)
        return self._send(call)

    def workers(self) -> list[WorkerState]:
        """As ``Runtime.workers``: every runtime running workers, with its heartbeat."""
        return self._send(self._calls.workers())

    def queue_states(self) -> list[QueueState]:
        """As ``Runtime.queue_states``: each queue, paused or not, with its counts."""
        return self._send(self._calls.queue_states())

    def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        """As ``Runtime.pause``: no process starts the queue's jobs until resumed."""
        return self._send(self._calls.pause(queue, by))

    def resume(self, queue: str) -> QueueState:
        """As ``Runtime.resume``."""
        return self._send(self._calls.resume(queue))

    def purge(
        self,
        *,
        older_than: float | timedelta = 0,
        statuses: Iterable[JobStatus | str] | None = None,
        queue: str | None = None,
    ) -> int:
        """As ``Runtime.purge``: delete finished jobs; returns how many."""
        return self._send(self._calls.purge(older_than, statuses, queue))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is terminal and return it. WaitTimeout after ``timeout``
        seconds (the job is unaffected); None waits as long as it takes."""
        timeout = optional_seconds("timeout", timeout)
        name("job_id", job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        history = self.history(job_id)
        if history[-1].status not in TERMINAL:
            events = Events(self, EventFeed(None, job_id, None, history[-1].seq, self._backoff))
            events.deadline = deadline
            try:
                with events:
                    for event in events:
                        if event.status in TERMINAL:
                            break
            except WaitTimeout:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout}s") from None
        return self.job(job_id)

    @property
    def _backoff(self) -> tuple[float, float]:
        return self.min_backoff, self.max_backoff

    def events(
        self,
        queue: str | None = None,
        job_id: str | None = None,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        since: int | None = None,
        timeout: float | None = None,
    ) -> Events:
        """Live events, in order, on a connection of their own that survives reconnects
        as the async client's does: ``with client.events(queue="exports") as events:
        for event in events: ...``. ``since``: start with the transitions after this
        seq. ``timeout``: WaitTimeout when no event came for that many seconds (None:
        wait for ever; ``close()`` from another thread ends the iteration)."""
        feed = EventFeed(queue, job_id, statuses, since, self._backoff)
        return Events(self, feed, optional_seconds("timeout", timeout))
