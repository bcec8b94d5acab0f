"""The wire protocol, for the server and every client alike (no I/O here: the sockets
are theirs): the message Structs, one decoder each way, the error code <-> exception
table in both directions, event framing and the paging of list replies.

Requests are a tagged union on ``op``; replies and events on ``type``. See
docs/protocol.md for the protocol as a client sees it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from ._errors import (
    ConveyorError,
    InvalidTransition,
    JobNotFound,
    QueueNotFound,
    ServerError,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    ValidationError,
)
from ._limits import shown
from ._models import EnqueueOptions, Event, Job
from ._states import JobStatus

RequestId = int | str | None


MAX_SEQ: Final = 2**63 - 1
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]


class _Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    id: RequestId = None


class Subscribe(_Request, frozen=True, tag="subscribe"):
    queue: str | None = None
    job_id: str | None = None
    statuses: list[JobStatus] | None = None
    # resume: first replay what came after this seq; also as a string of digits, for
    # clients whose numbers are doubles (JavaScript): seqs on PostgreSQL pass 2**53
    since: Seq | Annotated[str, msgspec.Meta(pattern="^[0-9]{1,19}$")] | None = None

    def resume_after(self) -> int | None:
        """``since`` as a seq (ValidationError for a string past the largest one)."""
        if self.since is None or isinstance(self.since, int):
            return self.since
        seq = int(self.since)
        if seq > MAX_SEQ:
            raise ValidationError(f"since must be at most {MAX_SEQ}, not {self.since}")
        return seq


class Unsubscribe(_Request, frozen=True, tag="unsubscribe"):
    subscription: str


class Enqueue(EnqueueOptions, frozen=True, kw_only=True, tag_field="op", tag="enqueue"):
    # Its options are the Python API's (one record); so it cannot also inherit _Request.
    id: RequestId = None
    queue: str
    payload: Any


class GetJob(_Request, frozen=True, tag="job_status"):
    job_id: str
    queue: str | None = None  # given: the job must be of this queue (else job_not_found)


class ListJobs(_Request, frozen=True, tag="list_jobs"):
    queue: str | None = None
    status: JobStatus | None = None
    limit: int = 50
    cursor: str | None = None
    tags: list[str] | None = None  # jobs having every one of these tags
    meta: dict[str, str] | None = None  # jobs whose meta holds every one of these pairs


class QueueCounts(_Request, frozen=True, tag="queue_counts"):
    pass


class GetHistory(_Request, frozen=True, tag="history"):
    job_id: str


class Cancel(_Request, frozen=True, tag="cancel"):
    job_id: str
    queue: str | None = None  # given: the job must be of this queue (else job_not_found)


class Rerun(_Request, frozen=True, tag="rerun"):
    job_id: str
    by: str | None = None


class CancelMatching(_Request, frozen=True, tag="cancel_matching"):
    queue: str | None = None
    statuses: list[JobStatus] | None = None  # default: every one a job can be cancelled from
    created_by: str | None = None
    older_than: float | None = None  # seconds since the job was created


class RerunMatching(_Request, frozen=True, tag="rerun_matching"):
    queue: str | None = None
    statuses: list[JobStatus] | None = None  # default: failed
    created_by: str | None = None
    older_than: float | None = None
    by: str | None = None


class Workers(_Request, frozen=True, tag="workers"):
    pass


class Queues(_Request, frozen=True, tag="queues"):
    pass


class Pause(_Request, frozen=True, tag="pause"):
    queue: str
    by: str | None = None


class Resume(_Request, frozen=True, tag="resume"):
    queue: str


class Purge(_Request, frozen=True, tag="purge"):
    older_than: float = 0  # seconds since the job finished
    statuses: list[JobStatus] | None = None  # default: every terminal status
    queue: str | None = None


Request = (
    Subscribe
    | Unsubscribe
    | Enqueue
    | GetJob
    | ListJobs
    | QueueCounts
    | GetHistory
    | Cancel
    | Rerun
    | Purge
    | Queues
    | Pause
    | Resume
    | CancelMatching
    | RerunMatching
    | Workers
)
OPS: Final = frozenset(
    {"subscribe", "unsubscribe", "enqueue", "job_status", "list_jobs", "history", "cancel"}
    | {"queue_counts", "rerun", "purge", "queues", "pause", "resume"}
    | {"cancel_matching", "rerun_matching", "workers"}
)


class Result(msgspec.Struct, frozen=True, tag_field="type", tag="result"):
    id: RequestId
    value: Any


class Error(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """``code`` is stable (clients branch on it); ``message`` is for people."""

    id: RequestId
    code: str
    message: str


_request_decoder: Final[msgspec.json.Decoder[Request]] = msgspec.json.Decoder(Request)
_any_decoder: Final = msgspec.json.Decoder()
encoder: Final = msgspec.json.Encoder()


def decode_request(data: bytes | str) -> Request | Error:
    """A request, or the error reply that says exactly what is wrong with it."""
    try:
        return _request_decoder.decode(data)
    except msgspec.ValidationError as exc:
        problem = str(exc)
    except msgspec.DecodeError as exc:
        return Error(None, "bad_json", f"not valid JSON: {exc}")
    except RecursionError:
        return Error(None, "bad_json", "JSON nested too deeply")
    # Not a valid request: decode it loosely to say why, and to echo its id if it has one.
    try:
        raw = _any_decoder.decode(data)
    except msgspec.DecodeError as exc:  # e.g. a valid prefix, then garbage
        return Error(None, "bad_json", f"not valid JSON: {exc}")
    except RecursionError:
        return Error(None, "bad_json", "JSON nested too deeply")
    if not isinstance(raw, dict):
        return Error(None, "bad_request", "a request must be a JSON object")
    rid = raw.get("id")
    if not isinstance(rid, (int, str)) or isinstance(rid, bool):
        rid = None
    op = raw.get("op")
    if op is None:
        return Error(rid, "bad_request", "missing `op`")
    if not isinstance(op, str) or op not in OPS:
        return Error(rid, "unknown_op", f"unknown op {shown(op)}; known: {', '.join(sorted(OPS))}")
    return Error(rid, "bad_request", problem)


REPLY_BUDGET: Final = 4 << 20
"""Bytes of jobs one list reply carries at most (but always one job): a page of large
jobs ends early, with the cursor of its last job, so every reply stays within what
clients read (conveyor.client reads frames of up to 64 MiB)."""


def jobs_page(jobs: list[Job], limit: int) -> dict[str, Any]:
    """A list reply: the jobs that fit in REPLY_BUDGET, and the cursor of the next page
    (None when this is the last)."""
    sizes = [len(encoder.encode(job)) for job in jobs] if len(jobs) > 1 else []
    if sum(sizes) > REPLY_BUDGET:
        total, count = 0, 0
        for size in sizes:
            if count and total + size > REPLY_BUDGET:
                break
            total += size
            count += 1
        jobs = jobs[:count]
        return {"jobs": jobs, "cursor": jobs[-1].id}
    return {"jobs": jobs, "cursor": jobs[-1].id if len(jobs) == limit else None}


# -- errors, both ways -------------------------------------------------------------------

_CODES: Final[tuple[tuple[type[ConveyorError], str], ...]] = (
    (QueueNotFound, "unknown_queue"),
    (JobNotFound, "unknown_job"),
    (ValidationError, "invalid"),
    (InvalidTransition, "invalid_transition"),
    (StoreBusy, "store_busy"),
    (StoreError, "store_unavailable"),
)
"""An exception's code is that of the first class here it is an instance of."""

_RAISED: Final[dict[str, type[ConveyorError]]] = {
    "invalid": ValidationError,
    "invalid_transition": InvalidTransition,
    "store_busy": StoreBusy,
    "store_unavailable": StoreUnavailable,
}


def error_code(exc: ConveyorError) -> str:
    """The wire's code for an exception (``error`` for one it has no code for)."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return "error"


def error_for(code: str, message: str, name: str = "") -> ConveyorError:
    """The exception an error reply stands for; ``name`` is the queue or job id the
    request named, for QueueNotFound and JobNotFound."""
    if code == "unknown_queue":
        return QueueNotFound(name, message=message)
    if code == "unknown_job":
        return JobNotFound(name, message=message)
    cls = _RAISED.get(code)
    return ServerError(code, message) if cls is None else cls(message)


# -- replies and events, as a client reads them -----------------------------------------

# An event's "subscription" field is dropped on decoding: msgspec skips unknown fields.
_reply_decoder: Final = msgspec.json.Decoder(Result | Error | Event)


def decode_reply(data: bytes | str) -> Result | Error | Event:
    """A message from the server. Raises msgspec.DecodeError (or RecursionError) for
    one that is not a message of this protocol."""
    reply: Result | Error | Event = _reply_decoder.decode(data)
    return reply


_encoded: dict[int, tuple[Event, bytes]] = {}


def event_frame(sub: str, event: Event) -> bytes:
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
