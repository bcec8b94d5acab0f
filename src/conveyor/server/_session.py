"""One websocket connection: its requests, its subscriptions and its outgoing events."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .._bus import EventStream
from .._errors import (
    ConveyorError,
    EventStreamOverflow,
    InvalidTransition,
    JobNotFound,
    QueueNotFound,
    StoreBusy,
    StoreError,
    ValidationError,
)
from .._models import Event
from .._states import JobStatus
from ._protocol import (
    Cancel,
    Enqueue,
    Error,
    GetHistory,
    GetJob,
    ListJobs,
    Request,
    Rerun,
    Result,
    Subscribe,
    Unsubscribe,
    decode_request,
    encoder,
)

if TYPE_CHECKING:
    from ._server import Server

log = logging.getLogger("conveyor.server")

CLOSE_TOO_SLOW = 4008  # the client fell too far behind its events
REPLAY_PAGE = 500

_ERROR_CODES: tuple[tuple[type[ConveyorError], str], ...] = (
    (QueueNotFound, "unknown_queue"),
    (JobNotFound, "unknown_job"),
    (ValidationError, "invalid"),
    (InvalidTransition, "invalid_transition"),
    (StoreBusy, "store_busy"),
    (StoreError, "store_unavailable"),
)


def _error_code(exc: ConveyorError) -> str:
    for cls, code in _ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return "error"


class Session:
    """Serves one connection until it closes.

    Requests are answered in order. Each subscription is a bus stream with its own
    bounded buffer (see EventStream for the policy: progress reports coalesce first);
    a subscription that overflows closes the connection with code 4008, so one stuck
    client costs only its own buffers and never slows the scheduler or other clients.
    """

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        self.server = server
        self.rt = server.runtime
        self.ws = ws
        self._send_lock = anyio.Lock()
        self._subscriptions: dict[str, anyio.CancelScope] = {}
        self._ids = itertools.count(1)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    async for message in self.ws:
                        await self._send(await self._answer(message))
                except ConnectionClosed:
                    pass
                tg.cancel_scope.cancel()
        except ConnectionClosed:
            pass

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send(data, text=True)

    async def _answer(self, message: str | bytes) -> bytes:
        if len(message) > self.server.max_message_bytes:
            error = Error(
                None,
                "too_large",
                f"message of {len(message)} bytes is over the"
                f" {self.server.max_message_bytes}-byte limit",
            )
            return encoder.encode(error)
        request = decode_request(message)
        if isinstance(request, Error):
            return encoder.encode(request)
        try:
            value = await self._dispatch(request)
        except ConveyorError as exc:
            return encoder.encode(Error(request.id, _error_code(exc), str(exc)))
        except Exception:
            log.exception("request %r failed", request)
            return encoder.encode(Error(request.id, "internal", "internal error; see the logs"))
        return encoder.encode(Result(request.id, value))

    async def _dispatch(self, request: Request) -> Any:
        rt = self.rt
        match request:
            case Subscribe():
                return {"subscription": await self._subscribe(request)}
            case Unsubscribe(subscription=sub):
                scope = self._subscriptions.pop(sub, None)
                if scope is None:
                    raise ValidationError(f"no subscription {sub!r} on this connection")
                scope.cancel()
                return {}
            case Enqueue():
                return await rt.enqueue(
                    request.queue,
                    request.payload,
                    created_by=request.created_by,
                    priority=request.priority,
                )
            case GetJob(job_id=job_id):
                return await rt.job(job_id)
            case ListJobs():
                jobs = await rt.list_jobs(
                    queue=request.queue,
                    status=request.status,
                    limit=request.limit,
                    cursor=request.cursor,
                )
                cursor = jobs[-1].id if len(jobs) == request.limit else None
                return {"jobs": jobs, "cursor": cursor}
            case GetHistory(job_id=job_id):
                return {"history": await rt.history(job_id)}
            case Cancel(job_id=job_id):
                job = await rt.job(job_id)
                return await rt.request_job_cancel(job.queue, job_id)
            case Rerun(job_id=job_id, by=by):
                return await rt.rerun(job_id, by=by)

    async def _subscribe(self, request: Subscribe) -> str:
        if request.queue is not None and request.queue not in self.rt.queues:
            raise QueueNotFound(request.queue)
        if request.since is not None and request.since < 0:
            raise ValidationError("since must be a seq >= 0")
        sub = f"s{next(self._ids)}"
        # Subscribe before reading what was missed, so nothing falls between the two.
        statuses = frozenset(request.statuses) if request.statuses else None
        stream = self.rt.events(
            queue=request.queue,
            job_id=request.job_id,
            statuses=statuses,
            max_buffer=self.server.max_buffer,
        )
        scope = anyio.CancelScope()
        self._subscriptions[sub] = scope
        self._tg.start_soon(self._forward, sub, stream, scope, statuses, request)
        return sub

    async def _forward(
        self,
        sub: str,
        stream: EventStream,
        scope: anyio.CancelScope,
        statuses: frozenset[JobStatus] | None,
        request: Subscribe,
    ) -> None:
        with scope:
            async with stream:
                try:
                    replayed = await self._replay(sub, request, statuses)
                    async for event, is_progress in stream.items():
                        if not is_progress and event.seq <= replayed:
                            continue  # already sent by the replay
                        await self._send(_event_bytes(sub, event))
                except EventStreamOverflow as exc:
                    log.warning("closing a client that fell behind: %s", exc)
                    with anyio.move_on_after(2):
                        await self.ws.close(CLOSE_TOO_SLOW, "too slow: event buffer overflowed")
                    self._tg.cancel_scope.cancel()

    async def _replay(
        self, sub: str, request: Subscribe, statuses: frozenset[JobStatus] | None
    ) -> int:
        """Send the transitions after ``request.since``; return the last seq sent."""
        if request.since is None:
            return 0
        last = request.since
        while True:
            events = await self.rt.missed_events(
                last, queue=request.queue, job_id=request.job_id, limit=REPLAY_PAGE
            )
            for event in events:
                if statuses is None or event.status in statuses:
                    await self._send(_event_bytes(sub, event))
            if events:
                last = events[-1].seq
            if len(events) < REPLAY_PAGE:
                return last


_encoded: dict[int, tuple[Event, bytes]] = {}


def _event_bytes(sub: str, event: Event) -> bytes:
    """The event as JSON plus the id of the subscription it answers.

    The bus hands the same Event object to every subscriber, so its JSON is encoded
    once and kept in a small cache (cleared when full: bounded), and only the
    subscription id is spliced in per client.
    """
    hit = _encoded.get(id(event))
    if hit is not None and hit[0] is event:
        data = hit[1]
    else:
        data = encoder.encode(event)
        if len(_encoded) >= 1024:
            _encoded.clear()
        _encoded[id(event)] = (event, data)
    return data[:-1] + b',"subscription":' + msgspec.json.encode(sub) + b"}"
