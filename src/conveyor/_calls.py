"""The transport-free half of the clients: what each operation sends, how its reply is
read, the table of requests awaiting replies, and the state of an events subscription.

conveyor.client (asyncio) and conveyor.sync (threads) both build their requests here and
read their replies here; they differ only in how bytes cross the socket and how a caller
waits. So an operation checks its arguments, and maps an error reply to an exception,
the same way whichever client it is called on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final, Generic, Protocol, TypeVar

import msgspec

from ._codec import encode_value
from ._errors import ConveyorError, ServerError, ValidationError
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
    text,
)
from ._limits import statuses as check_statuses
from ._logging import get_logger
from ._models import EnqueueOptions, Event, HistoryEntry, Job, QueueState, WorkerState
from ._states import JobStatus
from ._wire import Enqueue, Error, Result, decode_reply, encoder, error_for

log = get_logger("conveyor.client")

T = TypeVar("T")

MAX_MESSAGE_BYTES: Final = 64 << 20
# A client checks what the Runtime would refuse whatever its configuration; sizes are
# the server's to judge (its Limits), so here they are unbounded.
NO_SIZE_LIMITS: Final = Limits(**dict.fromkeys(Limits.__struct_fields__, 1 << 40))


def decode(message: str | bytes) -> Result | Error | Event | None:
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


def checked_token(token: Any) -> str | None:
    """A bearer token, checked: visible ASCII (what an HTTP header carries unchanged)."""
    if token is None:
        return None
    checked = text("token", token, 4096)
    if not all("!" <= c <= "~" for c in checked):
        raise ValidationError("token must be visible ASCII characters (no spaces)")
    return checked


def auth_headers(token: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {token}"} if token else None


def backoff_bounds(min_backoff: Any, max_backoff: Any) -> tuple[float, float]:
    """The reconnect delays of an events() iterator, checked: seconds, min <= max."""
    low, high = seconds("min_backoff", min_backoff), seconds("max_backoff", max_backoff)
    if low > high:
        raise ValidationError(f"min_backoff ({low}) must not exceed max_backoff ({high})")
    return low, high


def message_size(max_message_bytes: Any) -> int:
    """The largest reply a client reads, checked."""
    if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
        raise ValidationError(
            f"max_message_bytes must be an int, not {type(max_message_bytes).__name__}"
        )
    if max_message_bytes < 1024:
        raise ValidationError(f"max_message_bytes must be >= 1024, not {max_message_bytes}")
    return max_message_bytes


class Call(Generic[T]):
    """One request: its id, its encoded message, what its errors name (the job id or
    queue it named), and how the value of its reply is read."""

    __slots__ = ("id", "message", "name", "read")

    def __init__(self, rid: int, message: bytes, name: str, read: Callable[[Any], T]) -> None:
        self.id = rid
        self.message = message
        self.name = name
        self.read = read


def _as(tp: type[T] | Any, key: str | None = None) -> Callable[[Any], T]:
    """A reply reader: the value (or its ``key``) converted to ``tp``."""
    if key is None:
        return lambda value: msgspec.convert(value, tp)
    return lambda value: msgspec.convert(value[key], tp)


def _count(key: str) -> Callable[[Any], int]:
    return lambda value: int(value[key])


def match_fields(
    queue: str | None,
    statuses: Iterable[JobStatus | str] | None,
    created_by: str | None,
    older_than: float | timedelta | None,
) -> dict[str, Any]:
    """A bulk operation's filter as wire fields, checked as the runtime checks them."""
    fields: dict[str, Any] = {
        "queue": None if queue is None else name("queue", queue),
        "created_by": optional_text("created_by", created_by, NO_SIZE_LIMITS.created_by_bytes),
        "older_than": optional_seconds("older_than", older_than),
    }
    if statuses is not None:
        fields["statuses"] = sorted(check_statuses("statuses", statuses))
    return fields


def _by(by: str | None) -> str | None:
    return optional_text("by", by, NO_SIZE_LIMITS.created_by_bytes)


class Calls:
    """Each operation's Call, its arguments checked as the Runtime checks them (the same
    ValidationError, before anything is sent). Request ids count up, thread-safely."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _op(self, op: str, read: Callable[[Any], T], **fields: Any) -> Call[T]:
        rid = self.next_id()
        label = str(fields.get("job_id") or fields.get("queue") or "")
        return Call(rid, encoder.encode({"id": rid, "op": op, **fields}), label, read)

    def enqueue(self, queue: str, payload: Any, options: EnqueueOptions) -> Call[Job]:
        name("queue", queue)
        # As checked: meta a dict and tags a list, whatever Mapping or iterable was given.
        _, options = enqueue_options(options, time.time(), NO_SIZE_LIMITS)
        if isinstance(options.delay, timedelta):  # the wire's delay is a number of seconds
            options = msgspec.structs.replace(options, delay=seconds("delay", options.delay))
        data = encode_value(payload, "payload", MAX_MESSAGE_BYTES, "the message size")
        fields = msgspec.structs.asdict(options)  # those left at their defaults stay off the wire
        rid = self.next_id()
        request = Enqueue(id=rid, queue=queue, payload=msgspec.Raw(data), **fields)
        return Call(rid, encoder.encode(request), queue, _as(Job))

    def job(self, job_id: str) -> Call[Job]:
        return self._op("job_status", _as(Job), job_id=name("job_id", job_id))

    def job_status(self, queue: str, job_id: str) -> Call[Job]:
        return self._job_of("job_status", queue, job_id)

    def list_jobs(
        self,
        queue: str | None,
        status: JobStatus | str | None,
        limit: int,
        cursor: str | None,
        *,
        created_by: str | None,
        tags: Iterable[str] | None,
        meta: Mapping[str, str] | None,
    ) -> Call[list[Job]]:
        checked, limit, cursor = list_options(status, limit, cursor)
        wanted_tags, wanted_meta = list_filters(tags, meta, NO_SIZE_LIMITS)
        creator = optional_text("created_by", created_by, NO_SIZE_LIMITS.created_by_bytes)
        return self._op(
            "list_jobs",
            _as(list[Job], "jobs"),
            queue=None if queue is None else name("queue", queue),
            status=checked,
            limit=limit,
            cursor=cursor,
            created_by=creator,
            tags=wanted_tags or None,
            meta=wanted_meta or None,
        )

    def queue_counts(self) -> Call[dict[str, dict[JobStatus, int]]]:
        return self._op("queue_counts", _as(dict[str, dict[JobStatus, int]], "queues"))

    def history(self, job_id: str) -> Call[list[HistoryEntry]]:
        return self._op(
            "history", _as(list[HistoryEntry], "history"), job_id=name("job_id", job_id)
        )

    def cancel(self, job_id: str) -> Call[Job]:
        return self._op("cancel", _as(Job), job_id=name("job_id", job_id))

    def request_job_cancel(self, queue: str, job_id: str) -> Call[Job]:
        return self._job_of("cancel", queue, job_id)

    def _job_of(self, op: str, queue: str, job_id: str) -> Call[Job]:
        """An operation on a job that must be of ``queue`` (else job_not_found)."""
        job = name("job_id", job_id)
        return self._op(op, _as(Job), job_id=job, queue=name("queue", queue))

    def rerun(self, job_id: str, by: str | None) -> Call[Job]:
        return self._op("rerun", _as(Job), job_id=name("job_id", job_id), by=_by(by))

    def cancel_matching(
        self,
        queue: str | None,
        statuses: Iterable[JobStatus | str] | None,
        created_by: str | None,
        older_than: float | timedelta | None,
    ) -> Call[int]:
        fields = match_fields(queue, statuses, created_by, older_than)
        return self._op("cancel_matching", _count("cancelled"), **fields)

    def count_matching(
        self,
        queue: str | None,
        statuses: Iterable[JobStatus | str] | None,
        created_by: str | None,
        older_than: float | timedelta | None,
    ) -> Call[int]:
        fields = match_fields(queue, statuses, created_by, older_than)
        return self._op("count_matching", _count("count"), **fields)

    def rerun_matching(
        self,
        queue: str | None,
        statuses: Iterable[JobStatus | str] | None,
        created_by: str | None,
        older_than: float | timedelta | None,
        by: str | None,
    ) -> Call[int]:
        fields = match_fields(queue, statuses, created_by, older_than)
        return self._op("rerun_matching", _count("rerun"), **fields, by=_by(by))

    def workers(self) -> Call[list[WorkerState]]:
        return self._op("workers", _as(list[WorkerState], "workers"))

    def queue_states(self) -> Call[list[QueueState]]:
        return self._op("queues", _as(list[QueueState], "queues"))

    def pause(self, queue: str, by: str | None) -> Call[QueueState]:
        return self._op("pause", _as(QueueState), queue=name("queue", queue), by=_by(by))

    def resume(self, queue: str) -> Call[QueueState]:
        return self._op("resume", _as(QueueState), queue=name("queue", queue))

    def purge(
        self,
        older_than: float | timedelta,
        statuses: Iterable[JobStatus | str] | None,
        queue: str | None,
    ) -> Call[int]:
        fields: dict[str, Any] = {
            "older_than": seconds("older_than", older_than),
            "queue": None if queue is None else name("queue", queue),
        }
        if statuses is not None:
            fields["statuses"] = sorted(check_statuses("statuses", statuses))
        return self._op("purge", _count("deleted"), **fields)


class Settable(Protocol):
    """What a caller waits on: ``anyio.Event`` or ``threading.Event``."""

    def set(self) -> None: ...


E = TypeVar("E", bound=Settable)


class Pending(Generic[E]):
    """A request awaiting its reply: set ``done`` once ``value`` or ``error`` is in."""

    __slots__ = ("done", "error", "name", "value")

    def __init__(self, name: str, done: E) -> None:
        self.name = name
        self.done = done
        self.value: Any = None
        self.error: ConveyorError | None = None

    def outcome(self, call: Call[T]) -> T:
        """The reply's value read as the call's result, or its error raised."""
        if self.error is not None:
            raise self.error
        return call.read(self.value)


class Replies(Generic[E]):
    """The requests of one connection awaiting their replies, by id. Its reader hands
    it every message (``deliver``); when the connection ends, ``fail_all``. Safe to use
    from several threads (a lock around the table; nothing waits while holding it)."""

    def __init__(self, new_event: Callable[[], E]) -> None:
        self._new_event = new_event
        self._pending: dict[int, Pending[E]] = {}
        self._lock = threading.Lock()

    def expect(self, call: Call[Any]) -> Pending[E]:
        pending = Pending(call.name, self._new_event())
        with self._lock:
            self._pending[call.id] = pending
        return pending

    def forget(self, rid: int) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    def deliver(self, message: str | bytes) -> None:
        """Settle the request a reply answers (events and unreadable messages: skipped)."""
        reply = decode(message)
        if reply is None or isinstance(reply, Event) or not isinstance(reply.id, int):
            return
        with self._lock:
            pending = self._pending.pop(reply.id, None)
        if pending is None:
            return
        if isinstance(reply, Error):
            pending.error = error_for(reply.code, reply.message, pending.name)
        else:
            pending.value = reply.value
        pending.done.set()

    def fail_all(self, code: str, message: str) -> None:
        """Settle every request still waiting with ServerError(code, message)."""
        with self._lock:
            waiting, self._pending = list(self._pending.values()), {}
        for pending in waiting:
            pending.error = ServerError(code, message)
            pending.done.set()


class EventFeed:
    """The state of one events() subscription across its reconnects: the subscribe
    message (resuming after the last seq seen), what each message means, and the
    backoff before the next connection."""

    def __init__(
        self,
        queue: str | None,
        job_id: str | None,
        statuses: Iterable[JobStatus | str] | None,
        since: int | None,
        backoff: tuple[float, float],
    ) -> None:
        self.request: dict[str, Any] = {
            "op": "subscribe",
            "queue": None if queue is None else name("queue", queue),
            "job_id": None if job_id is None else name("job_id", job_id),
        }
        if statuses is not None:
            self.request["statuses"] = sorted(check_statuses("statuses", statuses))
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or since < 0
        ):
            raise ValidationError(f"since must be a seq (an int >= 0), not {shown(since)}")
        self.last_seq = since
        self.min_backoff, self.max_backoff = backoff
        self.delay = self.min_backoff

    def subscribe(self) -> bytes:
        resume = {} if self.last_seq is None else {"since": self.last_seq}
        return encoder.encode({"id": 0, **self.request, **resume})

    def read(self, message: str | bytes) -> Event | None:
        """The event a message carries, or None; the subscription's error reply raised."""
        item = decode(message)
        if item is None:
            return None
        if isinstance(item, Error):
            raise error_for(item.code, item.message)
        if isinstance(item, Result):
            self.delay = self.min_backoff  # subscribed
            return None
        # Transitions arrive in seq order; a progress report repeats its job's last seq.
        # So the highest seq seen is where to resume.
        self.last_seq = item.seq if self.last_seq is None else max(self.last_seq, item.seq)
        return item

    def refused(self, status: int) -> None:
        """The server answered the handshake with HTTP ``status``: ServerError if it is
        a refusal of who we are (401, 403); anything else is retried."""
        if status in (401, 403):
            raise ServerError(f"http_{status}", "the server refused the connection")
        log.warning("events: server answered %s; retrying in %.2fs", status, self.delay)

    def lost(self, exc: BaseException) -> None:
        """The connection failed or dropped; it is retried."""
        log.info("events: connection lost (%s); retrying in %.2fs", exc, self.delay)

    def backoff(self) -> float:
        """The seconds to wait before the next connection (doubling each time, up to
        max_backoff, until a subscription succeeds)."""
        delay = self.delay
        self.delay = min(delay * 2, self.max_backoff)
        return delay
