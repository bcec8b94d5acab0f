"""A Python client for conveyor's websocket protocol (see docs/protocol.md).

::

    async with Client("ws://127.0.0.1:8765", token=None) as client:
        job = await client.enqueue("exports", {"query": "q"})
        async for event in client.events(job_id=job.id):
            print(event.status, event.progress)
            if event.status.is_terminal:
                break
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio.abc import TaskGroup
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ._calls import (
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
from ._errors import ServerError, WaitTimeout
from ._limits import name, optional_seconds
from ._logging import get_logger
from ._models import EnqueueOptions, Event, HistoryEntry, Job, QueueState, WorkerState
from ._states import TERMINAL, JobStatus

log = get_logger("conveyor.client")

__all__ = ("Client", "ServerError", "open_failure", "websocket_url")

T = TypeVar("T")

CLOSE_TIMEOUT = 2.0  # seconds a closing handshake may take when leaving the client


def open_failure(exc: Exception, url: str) -> ServerError | None:
    """The ServerError for a failed websocket handshake (the async and the sync clients
    raise the same), or None for an exception that is not one."""
    if isinstance(exc, InvalidStatus):
        return ServerError(f"http_{exc.response.status_code}", "the server refused us")
    if isinstance(exc, (OSError, TimeoutError, InvalidURI, InvalidHandshake)):
        return ServerError("unreachable", f"{url}: {exc}")
    return None


class Client:
    """Calls a conveyor server over one websocket connection, reconnecting when needed.

    Requests (``enqueue``, ``job_status``, ...) share one connection; each ``events()``
    iterator has its own, which it re-opens with exponential backoff (``min_backoff``
    to ``max_backoff`` seconds) after a drop, resuming after the last seq it saw: no
    transition is lost or repeated across a reconnect.

    ``url`` is the server's ``ws://`` or ``wss://`` address; the ``http://`` address of
    its dashboard works too. Replies of up to ``max_message_bytes`` are read (the server
    pages lists to stay well below the default). For code without an event loop,
    conveyor.sync.Client has the same methods, blocking.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = websocket_url(url)
        self.max_message_bytes = message_size(max_message_bytes)
        self.token = checked_token(token)
        self.min_backoff, self.max_backoff = backoff_bounds(min_backoff, max_backoff)
        self._calls = Calls()
        self._replies: Replies[anyio.Event] = Replies(anyio.Event)
        self._ws: ClientConnection | None = None
        self._tg: TaskGroup | None = None
        self._connect_lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        ws = await self._open()  # fails before anything else starts: nothing to undo
        self._tg = await anyio.create_task_group().__aenter__()
        self._adopt(ws)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Left while a cancellation is under way (a timeout around the block): the close
        # is shielded and bounded, and the task group is exited whatever happens, or the
        # enclosing cancel scopes could not be exited.
        try:
            if self._ws is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                    await self._ws.close()
        finally:
            if self._tg is not None:
                # The reader is cancelled and exits quietly; the body's own exception (if
                # any) propagates as itself, not wrapped in a group by the task group.
                self._tg.cancel_scope.cancel()
                tg, self._tg = self._tg, None
                await tg.__aexit__(None, None, None)

    def _connect(self) -> Any:
        return connect(
            self.url,
            additional_headers=auth_headers(self.token),
            open_timeout=10,
            max_size=self.max_message_bytes,
        )

    async def _open(self) -> ClientConnection:
        try:
            ws: ClientConnection = await self._connect()
        except Exception as exc:
            failure = open_failure(exc, self.url)
            if failure is None:
                raise
            raise failure from exc
        return ws

    def _adopt(self, ws: ClientConnection) -> None:
        assert self._tg is not None
        self._ws = ws
        self._tg.start_soon(self._read, ws)

    async def _connection(self) -> ClientConnection:
        """The request connection, re-opened if it dropped."""
        async with self._connect_lock:
            if self._tg is None:
                raise ServerError("closed", "use the client inside `async with`")
            if self._ws is None or self._ws.close_code is not None:
                self._adopt(await self._open())
            assert self._ws is not None
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._replies.deliver(message)
        except ConnectionClosed:
            pass
        finally:
            self._replies.fail_all("disconnected", "the connection to the server closed")

    async def _send(self, call: Call[T]) -> T:
        """Send a request and wait for its reply, read as the call's result."""
        ws = await self._connection()
        pending = self._replies.expect(call)
        try:
            await ws.send(call.message, text=True)
        except ConnectionClosed as exc:
            self._replies.forget(call.id)
            raise ServerError("disconnected", str(exc)) from exc
        await pending.done.wait()
        return pending.outcome(call)

    async def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the job's run time limit)
        unique_key: str | None = None,
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> Job:
        """As ``Runtime.enqueue``: options left out take the queue's defaults. What the
        Runtime would refuse whatever its queue is refused here too, before anything is
        sent (the same ValidationError); the server then checks sizes and the queue's
        payload type."""
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
        return await self._send(self._calls.enqueue(queue, payload, options))

    async def job(self, job_id: str) -> Job:
        """The current record of a job of any queue. JobNotFound if there is none."""
        return await self._send(self._calls.job(job_id))

    async def job_status(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.job_status``: JobNotFound unless it is a job of ``queue``."""
        return await self._send(self._calls.job_status(queue, job_id))

    async def list_jobs(
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
        return await self._send(
            self._calls.list_jobs(
                queue, status, limit, cursor, created_by=created_by, tags=tags, meta=meta
            )
        )

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        """Jobs per status for each queue the server knows (zeros included)."""
        return await self._send(self._calls.queue_counts())

    async def history(self, job_id: str) -> list[HistoryEntry]:
        """Every transition of the job, oldest first."""
        return await self._send(self._calls.history(job_id))

    async def cancel(self, job_id: str) -> Job:
        """As ``Runtime.cancel``: cancel a job of any queue, found by id."""
        return await self._send(self._calls.cancel(job_id))

    async def request_job_cancel(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.request_job_cancel``: JobNotFound unless it is a job of ``queue``."""
        return await self._send(self._calls.request_job_cancel(queue, job_id))

    async def rerun(self, job_id: str, *, by: str | None = None) -> Job:
        """As ``Runtime.rerun``: a finished job back to queued."""
        return await self._send(self._calls.rerun(job_id, by))

    async def cancel_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """As ``Runtime.cancel_matching``: cancel every job matching; how many."""
        call = self._calls.cancel_matching(queue, statuses, created_by, older_than)
        return await self._send(call)

    async def count_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """As ``Runtime.count_matching``: how many jobs a bulk operation would take."""
        return await self._send(self._calls.count_matching(queue, statuses, created_by, older_than))

    async def rerun_matching(
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
        return await self._send(call)

    async def workers(self) -> list[WorkerState]:
        """As ``Runtime.workers``: every runtime running workers, with its heartbeat."""
        return await self._send(self._calls.workers())

    async def queue_states(self) -> list[QueueState]:
        """As ``Runtime.queue_states``: each queue, paused or not, with its counts."""
        return await self._send(self._calls.queue_states())

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        """As ``Runtime.pause``: no process starts the queue's jobs until resumed."""
        return await self._send(self._calls.pause(queue, by))

    async def resume(self, queue: str) -> QueueState:
        """As ``Runtime.resume``."""
        return await self._send(self._calls.resume(queue))

    async def purge(
        self,
        *,
        older_than: float | timedelta = 0,
        statuses: Iterable[JobStatus | str] | None = None,
        queue: str | None = None,
    ) -> int:
        """As ``Runtime.purge``: delete finished jobs (``older_than`` seconds or a
        timedelta since they finished); returns how many."""
        return await self._send(self._calls.purge(older_than, statuses, queue))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:  # noqa: ASYNC109
        """Until the job is terminal. WaitTimeout after ``timeout`` seconds."""
        timeout = optional_seconds("timeout", timeout)
        name("job_id", job_id)
        try:
            with anyio.fail_after(timeout):
                history = await self.history(job_id)
                if history[-1].status not in TERMINAL:
                    stream = self.events(job_id=job_id, since=history[-1].seq)
                    try:
                        async for event in stream:
                            if event.status in TERMINAL:
                                break
                    finally:
                        await stream.aclose()
                return await self.job(job_id)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id} did not finish within {timeout}s") from None

    async def events(
        self,
        queue: str | None = None,
        job_id: str | None = None,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        since: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Live events, in order, surviving reconnects (see the class docstring).

        ``since``: start with the transitions after this seq. Close the iterator
        (``aclose()``, or ``contextlib.aclosing``) when you stop early.
        """
        feed = EventFeed(queue, job_id, statuses, since, (self.min_backoff, self.max_backoff))
        while True:
            try:
                async with self._connect() as ws:
                    await ws.send(feed.subscribe(), text=True)
                    async for message in ws:
                        event = feed.read(message)
                        if event is not None:
                            yield event
            except InvalidStatus as exc:
                feed.refused(exc.response.status_code)
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                feed.lost(exc)
            await anyio.sleep(feed.backoff())
