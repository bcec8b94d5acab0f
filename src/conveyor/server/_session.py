"""One websocket connection: its requests, its subscriptions and its outgoing events.

Transport-neutral: the websockets server (_server.py) and the ASGI app (conveyor.asgi)
each hand a Session a Connection of their own, so both speak the one protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio

from .._bus import EventStream, Sink
from .._errors import ConveyorError, EventStreamOverflow, ValidationError
from .._limits import shown
from .._logging import get_logger
from .._wire import (
    Cancel,
    CancelMatching,
    CountMatching,
    Enqueue,
    Error,
    GetHistory,
    GetJob,
    ListJobs,
    Pause,
    Purge,
    QueueCounts,
    Queues,
    Request,
    Rerun,
    RerunMatching,
    Result,
    Resume,
    Subscribe,
    Unsubscribe,
    Workers,
    decode_request,
    encoder,
    error_code,
    event_frame,
    jobs_page,
)
from ._api import ServedRuntime

log = get_logger("conveyor.server")

CLOSE_TOO_SLOW = 4008  # the client fell too far behind its events
SLOW_CLOSE_TIMEOUT = 10.0  # seconds a client closed for being slow has to read the close
REPLAY_PAGE = 500


class Connection(Protocol):
    """A websocket as a session uses it; each transport adapts its own to this.

    ``messages`` ends when the client closes. ``send`` writes a text frame with
    backpressure (it waits while the transport's buffer is full) and raises the
    transport's own exception once the connection is gone: the transport's adapter,
    around :meth:`Session.run`, treats that as the end of the connection.
    ``fanout`` is a bus Sink that writes events at once, without waiting, to this and
    every other connection of the transport it can (open, write buffer low), and the key
    that names this connection to it; None for a transport that cannot write without
    waiting: each event then goes through ``send``.
    ``close`` sends a close frame and gives the client ``linger`` seconds to read it.
    """

    @property
    def fanout(self) -> tuple[Sink, Any] | None: ...

    def messages(self) -> AsyncIterator[str | bytes]: ...

    async def send(self, frame: bytes) -> None: ...

    async def close(self, code: int, reason: str, *, linger: float) -> None: ...


class Session:
    """Serves one connection until it closes.

    Requests are answered in order. Each subscription is a bus stream with its own
    bounded buffer (see EventStream for the policy: progress reports coalesce first);
    a subscription that overflows closes the connection with code 4008, so one stuck
    client costs only its own buffers and never slows the scheduler or other clients.
    """

    def __init__(
        self, rt: ServedRuntime, ws: Connection, *, max_message_bytes: int, max_buffer: int
    ) -> None:
        self.rt = rt
        self.max_message_bytes = max_message_bytes
        self.max_buffer = max_buffer
        self.ws = ws
        self._send_lock = anyio.Lock()
        self._subscriptions: dict[str, anyio.CancelScope] = {}
        self._ids = itertools.count(1)

    async def run(self) -> None:
        """Answer requests until the client closes. The transport's exception for a
        connection that went (from the request loop or a forwarder) propagates, in an
        exception group: its adapter knows it and ends quietly. The session counts as
        a websocket client in the runtime's stats while it runs, whichever transport."""
        stats = self.rt.stats
        stats.websocket_clients += 1
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                async for message in self.ws.messages():
                    await self._send(await self._answer(message))
                tg.cancel_scope.cancel()
        finally:
            stats.websocket_clients -= 1

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send(data)

    async def _answer(self, message: str | bytes) -> bytes:
        if len(message) > self.max_message_bytes:
            error = Error(
                None,
                "too_large",
                f"message of {len(message)} bytes is over the {self.max_message_bytes}-byte limit",
            )
            return encoder.encode(error)
        request = decode_request(message)
        if isinstance(request, Error):
            return encoder.encode(request)
        try:
            value = await self._dispatch(request)
        except ConveyorError as exc:
            return encoder.encode(Error(request.id, error_code(exc), str(exc)))
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
                    raise ValidationError(f"no subscription {shown(sub)} on this connection")
                scope.cancel()
                return {}
            case Enqueue():
                (job,) = await rt.submit(request.queue, [request.payload], request)
                return job
            case GetJob(job_id=job_id, queue=None):
                return await rt.job(job_id)
            case GetJob(job_id=job_id, queue=str() as queue):
                return await rt.job_status(queue, job_id)
            case ListJobs():
                jobs = await rt.list_jobs(
                    queue=request.queue,
                    status=request.status,
                    limit=request.limit,
                    cursor=request.cursor,
                    created_by=request.created_by,
                    tags=request.tags,
                    meta=request.meta,
                )
                return jobs_page(jobs, request.limit)
            case QueueCounts():
                return {"queues": await rt.queue_counts()}
            case GetHistory(job_id=job_id):
                return {"history": await rt.history(job_id)}
            case Cancel(job_id=job_id, queue=None):
                return await rt.cancel(job_id)
            case Cancel(job_id=job_id, queue=str() as queue):
                return await rt.request_job_cancel(queue, job_id)
            case Rerun(job_id=job_id, by=by):
                return await rt.rerun(job_id, by=by)
            case Purge(older_than=older_than, statuses=statuses, queue=queue):
                if statuses is None:
                    deleted = await rt.purge(older_than=older_than, queue=queue)
                else:
                    deleted = await rt.purge(older_than=older_than, statuses=statuses, queue=queue)
                return {"deleted": deleted}
            case Queues():
                return {"queues": await rt.queue_states()}
            case Pause(queue=queue, by=by):
                return await rt.pause(queue, by=by)
            case Resume(queue=queue):
                return await rt.resume(queue)
            case Workers():
                return {"workers": await rt.workers()}
            case CancelMatching() | RerunMatching() | CountMatching():
                return await _matching(rt, request)

    async def _subscribe(self, request: Subscribe) -> str:
        if request.job_id is not None:
            await self.rt.job(request.job_id)  # JobNotFound now, as a reply
        sub = f"s{next(self._ids)}"
        # Subscribe before reading what was missed, so nothing falls between the two.
        stream = self.rt.events(
            queue=request.queue,
            job_id=request.job_id,
            statuses=request.statuses,
            max_buffer=self.max_buffer,
        )
        if request.resume_after() is not None:
            stream.first = None  # the replay from `since` brings it up to date instead
        forward = _Forward(self, sub, stream)
        self._subscriptions[sub] = forward.scope
        self._tg.start_soon(forward.run, request)
        return sub

    async def close_too_slow(self, reason: str) -> None:
        """Close with 4008 after what is already on its way. A slow client (not a dead
        one) reads the frames before it, then the close frame: it gets SLOW_CLOSE_TIMEOUT
        seconds for that, not the 2 s of an ordinary close, or the connection would be
        cut under it and all it saw would be an EOF."""
        log.warning("closing a client that fell behind: %s", reason)
        with anyio.move_on_after(SLOW_CLOSE_TIMEOUT + 1):
            await self.ws.close(
                CLOSE_TOO_SLOW, "too slow: event buffer overflowed", linger=SLOW_CLOSE_TIMEOUT
            )
        self._tg.cancel_scope.cancel()


async def _matching(
    rt: ServedRuntime, request: CancelMatching | RerunMatching | CountMatching
) -> Any:
    """A bulk cancel or rerun, or the count of what one would take (statuses None: the
    operation's default)."""
    fields: dict[str, Any] = {
        "queue": request.queue,
        "statuses": request.statuses,
        "created_by": request.created_by,
        "older_than": request.older_than,
    }
    if isinstance(request, CancelMatching):
        return {"cancelled": await rt.cancel_matching(**fields)}
    if isinstance(request, CountMatching):
        return {"count": await rt.count_matching(**fields)}
    return {"rerun": await rt.rerun_matching(**fields, by=request.by)}


class _Forward:
    """Delivers one subscription's events to its connection, in order.

    Fast path: while nothing is queued for it, the stream's sink is the connection's
    ``fanout`` (the websockets server's), which the bus hands each event with every
    other idle subscription's, and which writes them all in the publisher's call (with
    ``websockets.broadcast``): a thousand clients cost a thousand writes, not a thousand
    task wake-ups, and the frame is encoded once per event. An event the sink cannot
    write now (the client's write buffer is high) waits in the stream's bounded buffer,
    and :meth:`run` sends it with backpressure; the sink is unset while it does, so later
    events queue behind it.
    """

    def __init__(self, session: Session, sub: str, stream: EventStream) -> None:
        self.session = session
        self.sub = sub
        self.stream = stream
        self.scope = anyio.CancelScope()
        # Around the slow-path sends: cancelled when the stream overflows, since a send
        # is then likely blocked on a client that stopped reading.
        self.send_scope = anyio.CancelScope()
        self.overflowed = False

    def _on_overflow(self) -> None:
        self.overflowed = True
        self.send_scope.cancel()

    def _attach(self) -> None:
        fanout = self.session.ws.fanout
        if fanout is not None:
            sink, key = fanout
            self.stream.sink_key = (self.sub, key)
            self.stream.sink = sink

    async def run(self, request: Subscribe) -> None:
        stream = self.stream
        with self.scope:
            async with stream:
                try:
                    stream.skip_through(await self._replay(request))
                    stream.on_overflow = self._on_overflow
                    self._attach()
                    async for event in stream:
                        if self.overflowed:
                            # It overflowed while no send was under way (one publish of
                            # more than the buffer holds): a send now would block on the
                            # client that stopped reading, with nothing left to cancel it.
                            break
                        stream.sink = None  # until this one is written
                        self.send_scope = anyio.CancelScope()
                        with self.send_scope:
                            await self.session._send(event_frame(self.sub, event))
                        if self.overflowed:
                            break  # do not keep writing to a client that stopped reading
                        self._attach()
                except EventStreamOverflow:
                    pass
                except ConveyorError as exc:  # the job went (purged) or the store failed
                    log.info("subscription %s ended: %s", self.sub, exc)
            if self.overflowed:
                await self.session.close_too_slow(
                    f"subscription {self.sub} fell more than {stream.max_buffer} events behind"
                )

    async def _replay(self, request: Subscribe) -> int:
        """Send the transitions after ``request.since``; return the last seq sent."""
        last = request.resume_after()
        if last is None:
            return 0
        statuses = request.statuses
        while True:
            events = await self.session.rt.missed_events(
                last, queue=request.queue, job_id=request.job_id, limit=REPLAY_PAGE
            )
            for event in events:
                if statuses is None or event.status in statuses:
                    await self.session._send(event_frame(self.sub, event))
            if events:
                last = events[-1].seq
            if len(events) < REPLAY_PAGE:
                return last
