"""The websocket protocol's messages, one Struct each, and the one decoder for requests.

Requests are a tagged union on ``op``; replies and events on ``type``. See
docs/protocol.md for the protocol as a client sees it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from .._limits import shown
from .._models import Job
from .._states import JobStatus

RequestId = int | str | None


class _Request(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    id: RequestId = None


class Subscribe(_Request, frozen=True, tag="subscribe"):
    queue: str | None = None
    job_id: str | None = None
    statuses: list[JobStatus] | None = None
    # resume: first replay what came after this seq
    since: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class Unsubscribe(_Request, frozen=True, tag="unsubscribe"):
    subscription: str


class Enqueue(_Request, frozen=True, tag="enqueue"):
    queue: str
    payload: Any
    created_by: str | None = None
    priority: int = 0
    delay: float | None = None  # seconds
    at: datetime | None = None  # RFC 3339 with a time zone
    max_attempts: int | None = None
    timeout: float | None = None
    unique_key: str | None = None


class GetJob(_Request, frozen=True, tag="job_status"):
    job_id: str


class ListJobs(_Request, frozen=True, tag="list_jobs"):
    queue: str | None = None
    status: JobStatus | None = None
    limit: int = 50
    cursor: str | None = None


class QueueCounts(_Request, frozen=True, tag="queue_counts"):
    pass


class GetHistory(_Request, frozen=True, tag="history"):
    job_id: str


class Cancel(_Request, frozen=True, tag="cancel"):
    job_id: str


class Rerun(_Request, frozen=True, tag="rerun"):
    job_id: str
    by: str | None = None


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
)
OPS: Final = frozenset(
    {"subscribe", "unsubscribe", "enqueue", "job_status", "list_jobs", "history", "cancel"}
    | {"queue_counts", "rerun", "purge"}
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
