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

import itertools
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import anyio
import msgspec
from anyio.abc import TaskGroup
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ._codec import encode_value
from ._errors import ConveyorError, ServerError, ValidationError, WaitTimeout
from ._limits import (
    Limits,
    enqueue_options,
    list_filters,
    list_options,
    name,
    optional_seconds,
    optional_text,
    seconds,
    shown,
)
from ._limits import statuses as check_statuses
from ._logging import get_logger
from ._models import EnqueueOptions, Event, HistoryEntry, Job, QueueState, WorkerState
from ._states import TERMINAL, JobStatus
from ._wire import Enqueue, Error, Result, decode_reply, encoder, error_for

log = get_logger("conveyor.client")

__all__ = ("Client", "ServerError")


MAX_MESSAGE_BYTES = 64 << 20
# The client checks what the Runtime would refuse whatever its configuration; sizes are
# the server's to judge (its Limits), so here they are unbounded.
_NO_SIZE_LIMITS = Limits(**dict.fromkeys(Limits.__struct_fields__, 1 << 40))
CLOSE_TIMEOUT = 2.0  # seconds a closing handshake may take when leaving the client


def _decode(message: str | bytes) -> Result | Error | Event | None:
    """A message from the server, or None (logged) for one this client cannot read: a
    newer server's message type, say. It never ends the connection."""
    try:
        return decode_reply(message)
    except (msgspec.DecodeError, RecursionError) as exc:
        log.warning("ignored a message from the server that this client cannot read: %s", exc)
        return None


def websocket_url(url: str) -> str:
    """The websocket address of a server given as ``ws(s)://`` or ``http(s)://``."""
    if not isinstance(url, str):
        raise ValidationError(f"url must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    schemes = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
    if not sep or scheme.lower() not in schemes or not rest.strip("/"):
        raise ValidationError(
            f"url must look like ws://127.0.0.1:8765 (or http://...), not {shown(url)}"
        )
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if not host:
        raise ValidationError(f"url {shown(url)} names no host")
    return f"{schemes[scheme.lower()]}://{rest}"


class _Pending:
    __slots__ = ("done", "error", "name", "value")

    def __init__(self, name: str) -> None:
        self.name = name  # the job id or queue the request named, for error messages
        self.done = anyio.Event()
        self.value: Any = None
        self.error: ConveyorError | None = None


class Client:
    """Calls a conveyor server over one websocket connection, reconnecting when needed.

    Requests (``enqueue``, ``job_status``, ...) share one connection; each ``events()``
    iterator has its own, which it re-opens with exponential backoff (``min_backoff``
    to ``max_backoff`` seconds) after a drop, resuming after the last seq it saw: no
    transition is lost or repeated across a reconnect.

    ``url`` is the server's ``ws://`` or ``wss://`` address; the ``http://`` address of
    its dashboard works too. Replies of up to ``max_message_bytes`` are read (the server
    pages lists to stay well below the default).
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
        self.max_message_bytes = max_message_bytes
        self.token = token
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
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
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return connect(
            self.url,
            additional_headers=headers,
            open_timeout=10,
            max_size=self.max_message_bytes,
        )

    async def _open(self) -> ClientConnection:
        try:
            ws: ClientConnection = await self._connect()
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ServerError(f"http_{status}", "the server refused us") from exc
        except (OSError, TimeoutError) as exc:
            raise ServerError("unreachable", f"{self.url}: {exc}") from exc
        except (InvalidURI, InvalidHandshake) as exc:
            raise ServerError("unreachable", f"{self.url}: {exc}") from exc
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
                reply = _decode(message)
                if reply is None or isinstance(reply, Event) or not isinstance(reply.id, int):
                    continue
                pending = self._pending.pop(reply.id, None)
                if pending is None:
                    continue
                if isinstance(reply, Error):
                    pending.error = error_for(reply.code, reply.message, pending.name)
                else:
                    pending.value = reply.value
                pending.done.set()
        except ConnectionClosed:
            pass
        finally:
            for pending in self._pending.values():
                pending.error = ServerError("disconnected", "the connection to the server closed")
                pending.done.set()
            self._pending.clear()

    async def _call(self, op: str, **fields: Any) -> Any:
        rid = next(self._ids)
        name = str(fields.get("job_id") or fields.get("queue") or "")
        return await self._send({"id": rid, "op": op, **fields}, name)

    async def _send(self, request: dict[str, Any] | Enqueue, name: str) -> Any:
        """Send a request and wait for its reply's value (``name``: what an error names)."""
        ws = await self._connection()
        rid = request["id"] if isinstance(request, dict) else request.id
        assert isinstance(rid, int)
        pending = self._pending[rid] = _Pending(name)
        try:
            await ws.send(encoder.encode(request), text=True)
        except ConnectionClosed as exc:
            self._pending.pop(rid, None)
            raise ServerError("disconnected", str(exc)) from exc
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value

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
        name("queue", queue)
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
        _, options = enqueue_options(options, time.time(), _NO_SIZE_LIMITS)
        if isinstance(options.delay, timedelta):  # the wire's delay is a number of seconds
            options = msgspec.structs.replace(options, delay=seconds("delay", options.delay))
        data = encode_value(payload, "payload", MAX_MESSAGE_BYTES, "the message size")
        fields = msgspec.structs.asdict(options)  # those left at their defaults stay off the wire
        request = Enqueue(id=next(self._ids), queue=queue, payload=msgspec.Raw(data), **fields)
        return msgspec.convert(await self._send(request, queue), Job)

    async def job(self, job_id: str) -> Job:
        """The current record of a job of any queue. JobNotFound if there is none."""
        value = await self._call("job_status", job_id=name("job_id", job_id))
        return msgspec.convert(value, Job)

    async def job_status(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.job_status``: JobNotFound unless it is a job of ``queue``."""
        fields = {"job_id": name("job_id", job_id), "queue": name("queue", queue)}
        value = await self._call("job_status", **fields)
        return msgspec.convert(value, Job)

    async def list_jobs(
        self,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> list[Job]:
        """Newest first; for the next page pass ``cursor=`` the last job's id. As
        ``Runtime.list_jobs``: ``tags`` and ``meta`` keep the jobs having all of them."""
        checked, limit, cursor = list_options(status, limit, cursor)
        wanted_tags, wanted_meta = list_filters(tags, meta, _NO_SIZE_LIMITS)
        value = await self._call(
            "list_jobs",
            queue=None if queue is None else name("queue", queue),
            status=checked,
            limit=limit,
            cursor=cursor,
            tags=wanted_tags or None,
            meta=wanted_meta or None,
        )
        return msgspec.convert(value["jobs"], list[Job])

    async def queue_counts(self) -> dict[str, dict[JobStatus, int]]:
        """Jobs per status for each queue the server knows (zeros included)."""
        value = await self._call("queue_counts")
        return msgspec.convert(value["queues"], dict[str, dict[JobStatus, int]])

    async def history(self, job_id: str) -> list[HistoryEntry]:
        value = await self._call("history", job_id=name("job_id", job_id))
        return msgspec.convert(value["history"], list[HistoryEntry])

    async def cancel(self, job_id: str) -> Job:
        """As ``Runtime.cancel``: cancel a job of any queue, found by id."""
        return msgspec.convert(await self._call("cancel", job_id=name("job_id", job_id)), Job)

    async def request_job_cancel(self, queue: str, job_id: str) -> Job:
        """As ``Runtime.request_job_cancel``: JobNotFound unless it is a job of ``queue``."""
        fields = {"job_id": name("job_id", job_id), "queue": name("queue", queue)}
        value = await self._call("cancel", **fields)
        return msgspec.convert(value, Job)

    async def rerun(self, job_id: str, *, by: str | None = None) -> Job:
        by = optional_text("by", by, _NO_SIZE_LIMITS.created_by_bytes)
        return msgspec.convert(await self._call("rerun", job_id=name("job_id", job_id), by=by), Job)

    async def cancel_matching(
        self,
        *,
        queue: str | None = None,
        statuses: Iterable[JobStatus | str] | None = None,
        created_by: str | None = None,
        older_than: float | timedelta | None = None,
    ) -> int:
        """As ``Runtime.cancel_matching``: cancel every job matching; how many."""
        fields = _match_fields(queue, statuses, created_by, older_than)
        return int((await self._call("cancel_matching", **fields))["cancelled"])

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
        fields = _match_fields(queue, statuses, created_by, older_than)
        fields["by"] = optional_text("by", by, _NO_SIZE_LIMITS.created_by_bytes)
        return int((await self._call("rerun_matching", **fields))["rerun"])

    async def workers(self) -> list[WorkerState]:
        """As ``Runtime.workers``: every runtime running workers, with its heartbeat."""
        value = await self._call("workers")
        return msgspec.convert(value["workers"], list[WorkerState])

    async def queue_states(self) -> list[QueueState]:
        """As ``Runtime.queue_states``: each queue, paused or not, with its counts."""
        value = await self._call("queues")
        return msgspec.convert(value["queues"], list[QueueState])

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        """As ``Runtime.pause``: no process starts the queue's jobs until resumed."""
        by = optional_text("by", by, _NO_SIZE_LIMITS.created_by_bytes)
        return msgspec.convert(
            await self._call("pause", queue=name("queue", queue), by=by), QueueState
        )

    async def resume(self, queue: str) -> QueueState:
        """As ``Runtime.resume``."""
        return msgspec.convert(await self._call("resume", queue=name("queue", queue)), QueueState)

    async def purge(
        self,
        *,
        older_than: float | timedelta = 0,
        statuses: Iterable[JobStatus | str] | None = None,
        queue: str | None = None,
    ) -> int:
        """As ``Runtime.purge``: delete finished jobs (``older_than`` seconds or a
        timedelta since they finished); returns how many."""
        fields: dict[str, Any] = {"older_than": seconds("older_than", older_than), "queue": queue}
        if statuses is not None:
            fields["statuses"] = sorted(check_statuses("statuses", statuses))
        value = await self._call("purge", **fields)
        return int(value["deleted"])

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
        request: dict[str, Any] = {"op": "subscribe", "queue": queue, "job_id": job_id}
        if statuses is not None:
            request["statuses"] = [JobStatus(s) for s in statuses]
        last_seq = since
        delay = self.min_backoff
        while True:
            try:
                async with self._connect() as ws:
                    resume = {} if last_seq is None else {"since": last_seq}
                    await ws.send(encoder.encode({"id": 0, **request, **resume}), text=True)
                    async for message in ws:
                        item = _decode(message)
                        if item is None:
                            continue
                        if isinstance(item, Error):
                            raise error_for(item.code, item.message)
                        if isinstance(item, Result):
                            delay = self.min_backoff  # subscribed
                            continue
                        # Transitions arrive in seq order; a progress report repeats its
                        # job's last seq. So the highest seq seen is where to resume.
                        last_seq = item.seq if last_seq is None else max(last_seq, item.seq)
                        yield item
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise ServerError(
                        f"http_{status}", "the server refused the connection"
                    ) from exc
                log.warning("events: server answered %s; retrying in %.2fs", status, delay)
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                log.info("events: connection lost (%s); retrying in %.2fs", exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)


def _match_fields(
    queue: str | None,
    statuses: Iterable[JobStatus | str] | None,
    created_by: str | None,
    older_than: float | timedelta | None,
) -> dict[str, Any]:
    """A bulk operation's filter as wire fields, checked as the runtime checks them."""
    fields: dict[str, Any] = {
        "queue": None if queue is None else name("queue", queue),
        "created_by": optional_text("created_by", created_by, _NO_SIZE_LIMITS.created_by_bytes),
        "older_than": optional_seconds("older_than", older_than),
    }
    if statuses is not None:
        fields["statuses"] = sorted(check_statuses("statuses", statuses))
    return fields
