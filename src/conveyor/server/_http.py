"""Plain HTTP, transport-neutral: the dashboard's files, the read-only JSON API and
Prometheus's ``/metrics``.

:func:`answer` takes a path (relative to where the server is mounted), its query string
and the Accept header, and returns a :class:`Reply`; the websockets server and the ASGI
app each turn that into a response of their own. The JSON API is the table
:data:`ENDPOINTS`, from which the OpenAPI document (_openapi.py) is made too, so every
path it answers is documented. A new route is one more Endpoint there.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Final, Literal, NamedTuple
from urllib.parse import parse_qs, parse_qsl

import msgspec

from .._errors import ConveyorError, JobNotFound, MissingExtra, QueueNotFound, ValidationError
from .._limits import MAX_LIST_LIMIT, MAX_THROUGHPUT_MINUTES
from .._logging import get_logger
from .._models import Job, Throughput, WorkerState
from .._states import JobStatus
from .._wire import JobsPage, encoder, jobs_page
from ..metrics import render as render_metrics
from ._api import ServedRuntime

log = get_logger("conveyor.server")


_STATIC: Final = resources.files(__package__).joinpath("static")
_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # ES modules: the type browsers require
    ".css": "text/css; charset=utf-8",
}
# The dashboard: static files holding no data, so they are served without the token
# (the page asks for it). Everything else on the port requires it. Path -> file name.
PAGES: Final = {"/": "index.html"} | {
    f"/{file.name}": file.name
    for file in _STATIC.iterdir()
    if file.name != "index.html" and file.name.endswith(tuple(_CONTENT_TYPES))
}


@functools.cache
def _page(name: str) -> tuple[bytes, str]:
    """A static file's bytes and content type, read from the package once."""
    return _STATIC.joinpath(name).read_bytes(), _CONTENT_TYPES[name[name.rindex(".") :]]


PUBLIC_PATHS: Final = frozenset(PAGES) | {"/healthz"}
_PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:;"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
JSON: Final = "application/json"


class Reply(NamedTuple):
    """An HTTP answer, before a transport sends it (with :func:`headers`)."""

    status: int
    body: bytes
    content_type: str


def headers(reply: Reply) -> list[tuple[str, str]]:
    """The headers every answer carries, whichever transport sends it."""
    found = [
        ("Content-Type", reply.content_type),
        ("Content-Length", str(len(reply.body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if reply.content_type.startswith("text/html"):
        found.append(("Content-Security-Policy", _PAGE_POLICY))
    return found


# -- what the JSON API answers, as Structs (the OpenAPI document's schemas) -------------


class ErrorReply(msgspec.Struct, frozen=True):
    """Every refusal: ``error`` is stable (clients branch on it), ``message`` names
    what was wrong (the field, the job, the queue)."""

    error: str
    message: str


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok"] = "ok"


class QueueCountsReply(msgspec.Struct, frozen=True):
    """Each queue's jobs per status (statuses with no job may be absent)."""

    queues: dict[str, dict[JobStatus, int]]


class WorkersReply(msgspec.Struct, frozen=True):
    workers: list[WorkerState]


def json_reply(status: int, value: Any) -> Reply:
    return Reply(status, encoder.encode(value), JSON)


def error_reply(status: int, code: str, message: str) -> Reply:
    return json_reply(status, ErrorReply(code, message))


def parse_query(query: str) -> dict[str, str]:
    """A query string as a dict; a name given twice counts by its last value."""
    return {k: v[-1] for k, v in parse_qs(query).items()}


class Query:
    """A request's query string: :meth:`get` reads a name's last value (as
    :func:`parse_query`), :attr:`pairs` holds every pair in order, blank values kept,
    for the names that repeat (``tag=``) or are patterns (``meta.KEY=``)."""

    def __init__(self, text: str) -> None:
        self.values = parse_query(text)
        self.pairs = parse_qsl(text, keep_blank_values=True)

    def get(self, name: str) -> str | None:
        return self.values.get(name)


# -- the endpoints ------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, its type (for the OpenAPI schema) and what it does."""

    name: str
    type: Any
    description: str


@dataclass(frozen=True)
class Endpoint:
    """``GET path``: ``{name}`` in the path stands for the rest of it (a job id)."""

    path: str
    summary: str
    returns: type
    run: Callable[[ServedRuntime, Query, str], Awaitable[Any]]
    params: tuple[Param, ...] = ()
    not_found: bool = False  # may answer 404 (an unknown job or queue)
    description: str = ""  # what the parameters cannot say (the OpenAPI operation's)


async def _queues(rt: ServedRuntime, query: Query, rest: str) -> QueueCountsReply:
    return QueueCountsReply(await rt.queue_counts())


async def _workers(rt: ServedRuntime, query: Query, rest: str) -> WorkersReply:
    return WorkersReply(await rt.workers())


async def _jobs(rt: ServedRuntime, query: Query, rest: str) -> JobsPage:
    limit = _int_query(query, "limit", 50)
    tags, meta = _job_filters(query)
    jobs = await rt.list_jobs(
        queue=query.get("queue"),
        status=query.get("status"),
        limit=limit,
        cursor=query.get("cursor"),
        created_by=query.get("created_by"),
        tags=tags,
        meta=meta,
    )
    return jobs_page(jobs, limit)


async def _throughput(rt: ServedRuntime, query: Query, rest: str) -> Throughput:
    minutes = _int_query(query, "minutes", 60)
    return await rt.throughput(minutes, queue=query.get("queue"))


async def _job(rt: ServedRuntime, query: Query, job_id: str) -> Job:
    return await rt.job(job_id)


async def _health(rt: ServedRuntime, query: Query, rest: str) -> Health:
    return Health()


ENDPOINTS: Final = (
    Endpoint("/healthz", "Whether the server answers (no token needed)", Health, _health),
    Endpoint("/api/queues", "Each queue's jobs per status", QueueCountsReply, _queues),
    Endpoint(
        "/api/workers", "The runtimes running workers, as the workers op", WorkersReply, _workers
    ),
    Endpoint(
        "/api/jobs",
        "A page of jobs, newest first",
        JobsPage,
        _jobs,
        (
            Param("queue", str, "only this queue's jobs (an unknown queue: 404)"),
            Param("status", JobStatus, "only jobs in this status"),
            Param(
                "limit",
                Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST_LIMIT)],
                "jobs per page (default 50); a page of large jobs may hold fewer",
            ),
            Param("cursor", str, "the `cursor` of the previous page: the page after it"),
            Param("created_by", str, "only jobs enqueued with exactly this `created_by`"),
            Param("tag", list[str], "only jobs having this tag; repeated, jobs having every one"),
        ),
        not_found=True,
        description="`meta.KEY=VALUE` (any KEY, e.g. `meta.tenant=acme`): only jobs whose"
        " meta holds KEY with VALUE; several keys, jobs holding every pair; a key given twice"
        " is refused (400), as is a bare `meta=`.",
    ),
    Endpoint("/api/jobs/{job_id}", "One job", Job, _job, not_found=True),
    Endpoint(
        "/api/throughput",
        "Jobs finished per minute and queue, from the store",
        Throughput,
        _throughput,
        (
            Param(
                "minutes",
                Annotated[int, msgspec.Meta(ge=1, le=MAX_THROUGHPUT_MINUTES)],
                "how many minutes back, the current one included (default 60)",
            ),
            Param("queue", str, "only this queue (an unknown queue: 404)"),
        ),
        not_found=True,
    ),
)
METRICS_PATH: Final = "/metrics"
OPENAPI_PATH: Final = "/openapi.json"


def _match(path: str) -> tuple[Endpoint, str] | None:
    for endpoint in ENDPOINTS:
        prefix, brace, _ = endpoint.path.partition("{")
        if not brace and path == endpoint.path:
            return endpoint, ""
        if brace and path.startswith(prefix) and len(path) > len(prefix):
            return endpoint, path.removeprefix(prefix)
    return None


async def answer(
    rt: ServedRuntime,
    path: str,
    query_string: str,
    *,
    accept: str,
    openapi: Callable[[], bytes],
) -> Reply:
    """Answer a plain (non-websocket) GET of ``path`` (relative to the server's root)
    with ``query_string`` (after the ``?``) and ``accept`` (the Accept header, for
    /metrics). ``openapi`` makes the OpenAPI document (its server URL is the transport's)."""
    path = path.rstrip("/") or "/"
    try:
        if path in PAGES:
            return Reply(200, *_page(PAGES[path]))
        if path == OPENAPI_PATH:
            return Reply(200, openapi(), JSON)
        if path == METRICS_PATH:
            return Reply(200, *await render_metrics(rt, accept))
        matched = _match(path)
        if matched is not None:
            endpoint, rest = matched
            return json_reply(200, await endpoint.run(rt, Query(query_string), rest))
    except (JobNotFound, QueueNotFound) as exc:
        return error_reply(404, "not_found", str(exc))
    except ValidationError as exc:
        return error_reply(400, "invalid", str(exc))
    except MissingExtra as exc:
        return error_reply(501, "not_installed", str(exc))
    except ConveyorError as exc:
        return error_reply(503, "unavailable", str(exc))
    except Exception:
        log.exception("GET %s failed", path)
        return error_reply(500, "internal", "internal error; see the server's log")
    return error_reply(404, "not_found", f"no such path: {path}")


def _int_query(query: Query, key: str, default: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    if len(text) > 20 or not text.isascii() or not text.lstrip("-").isdigit():
        raise ValidationError(f"{key} must be an integer, not {text[:40]!r}")
    return int(text)


def _job_filters(query: Query) -> tuple[list[str], dict[str, str]]:
    """``tag=NAME`` (repeatable: jobs having every one) and ``meta.KEY=VALUE`` (one
    value per key) of /api/jobs, blank values kept (``meta.k=`` matches an empty
    value); the runtime checks what they hold, as for list_jobs."""
    tags: list[str] = []
    meta: dict[str, str] = {}
    for key, value in query.pairs:
        if key == "tag":
            tags.append(value)
        elif key == "meta":
            raise ValidationError("a meta filter is meta.KEY=VALUE, e.g. meta.tenant=acme")
        elif key.startswith("meta."):
            meta_key = key.removeprefix("meta.")
            if meta_key in meta:
                raise ValidationError(f"{key[:80]!r} is given twice: a job has one value per key")
            meta[meta_key] = value
    return tags, meta
