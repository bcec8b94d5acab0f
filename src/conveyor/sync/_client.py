"""The blocking client: conveyor.client's methods for code without an event loop, on
websockets' own threading client (``websockets.sync.client``). The requests and the
reading of replies are conveyor._calls', shared with the async client; this module only
moves bytes and waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from .._calls import (
    MAX_MESSAGE_BYTES,
    Call,
    Calls,
    EventFeed,
    Replies,
    auth_headers,
    backoff_bounds,
    checked_token,
    message_size,
    websocket_url,
)
from .._errors import ServerError, WaitTimeout
from .._limits import bounded_seconds, name, optional_seconds
from .._models import EnqueueOptions, Event, HistoryEntry, Job, QueueState, WorkerState
from .._states import TERMINAL, JobStatus
from ..client import CLOSE_TIMEOUT, open_failure
from ._closing import Closing

__all__ = ("Client", "Events")

T = TypeVar("T")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _connect(client: Client, timeout: float | None) -> ClientConnection:
    ws = connect(
        client.url,
        additional_headers=auth_headers(client.token),
        open_timeout=timeout,
        close_timeout=CLOSE_TIMEOUT,
        max_size=client.max_message_bytes,
    )
    # Entered (it returns itself): the connection is this module's to close, as
    # websockets (17.1 on) asks of one not used in a ``with`` block.
    return ws.__enter__()


def _open(client: Client, timeout: float | None) -> ClientConnection:
    """A connection for requests: a failed handshake is the async client's ServerError."""
    try:
        return _connect(client, timeout)
    except Exception as exc:
        failure = open_failure(exc, client.url)
        if failure is None:
            raise
        raise failure from exc


class _Connection:
    """One websocket with its reader thread and the requests awaiting its replies. A
    table per connection: one that ends fails its own requests, never a newer one's."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.replies: Replies[threading.Event] = Replies(threading.Event)
        self.reader = threading.Thread(target=self._read, name="conveyor-client", daemon=True)
        self.reader.start()

    @property
    def is_open(self) -> bool:
        return self.ws.protocol.state is State.OPEN and self.reader.is_alive()

    def _read(self) -> None:
        try:
            for message in self.ws:
                self.replies.deliver(message)
        except ConnectionClosed:
            pass
        finally:
            self.replies.fail_all("disconnected", "the connection to the server closed")

    def close(self) -> None:
        self.ws.close()
        self.reader.join(CLOSE_TIMEOUT)


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
        self._conn: _Connection | None = None
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

    def _connection(self) -> _Connection:
        """The request connection, (re-)opened if there is none or it dropped."""
        with self._lock:
            if self._closed:
                raise ServerError("closed", "this client was closed")
            if self._conn is None or not self._conn.is_open:
                self._conn = _Connection(_open(self, self.request_timeout))
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


class Events(Closing, Iterator[Event]):
    """A blocking iterator of live events (see Client.events). Close it, or leave its
    ``with`` block, to drop its connection; closing from another thread ends a blocked
    ``next()`` at once."""

    def __init__(self, client: Client, feed: EventFeed, timeout: float | None = None) -> None:
        self._client = client
        self._feed = feed
        self.timeout = timeout
        self.deadline: float | None = None  # an overall deadline (wait() sets it)
        self._ws: ClientConnection | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> Self:
        # Subscribed before the block's body runs: what it enqueues is seen. (Iterated
        # without ``with``, it subscribes on the first next().)
        if self._ws is None:
            try:
                self._ws = _subscribe(self._client, self._feed, None)
            except Exception as exc:
                failure = open_failure(exc, self._client.url)
                if failure is None:
                    raise
                raise failure from exc
        return self

    def close(self) -> None:
        """Stop: drop the connection; a next() blocked in another thread ends."""
        self._stopped.set()
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def __next__(self) -> Event:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if self.deadline is not None:
            deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        while not self._stopped.is_set():
            if self._ws is None:
                try:
                    ws = _subscribe(self._client, self._feed, _remaining(deadline))
                except InvalidStatus as exc:
                    self._feed.refused(exc.response.status_code)  # raises for 401 and 403
                    self._reconnect_after(exc, deadline)
                    continue
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    self._reconnect_after(exc, deadline)
                    continue
                self._ws = ws
                if self._stopped.is_set():  # closed from another thread meanwhile
                    break
            try:
                message = self._ws.recv(timeout=_remaining(deadline))
            except TimeoutError:
                raise WaitTimeout(f"no event within {self.timeout}s") from None
            except (OSError, ConnectionClosed) as exc:
                self._reconnect_after(exc, deadline)
                continue
            event = self._feed.read(message)
            if event is not None:
                return event
        self.close()
        raise StopIteration

    def _reconnect_after(self, exc: BaseException, deadline: float | None) -> None:
        """Drop the connection and wait the feed's backoff (cut short by close(), and
        by the deadline: WaitTimeout once it passes)."""
        self._feed.lost(exc)
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        delay = self._feed.backoff()
        left = _remaining(deadline)
        if left is not None and left <= delay:
            self._stopped.wait(left)
            if not self._stopped.is_set():
                raise WaitTimeout(f"no event within {self.timeout}s") from None
        self._stopped.wait(delay)


def _subscribe(client: Client, feed: EventFeed, timeout: float | None) -> ClientConnection:
    try:
        ws = _connect(client, timeout if timeout is not None else client.request_timeout)
    except (OSError, TimeoutError, InvalidHandshake):
        raise  # retried by the iterator
    except Exception as exc:  # an address websockets cannot use: no retry helps
        failure = open_failure(exc, client.url)
        if failure is None:
            raise
        raise failure from exc
    ws.send(feed.subscribe(), text=True)
    return ws
