"""Plain HTTP on the websocket port: the dashboard page, read-only JSON and Prometheus's
``/metrics``."""

from __future__ import annotations

import functools
import http
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .._errors import ConveyorError, JobNotFound, MissingExtra, QueueNotFound, ValidationError
from .._logging import get_logger
from .._wire import encoder, jobs_page
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


def respond(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    if content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = _PAGE_POLICY
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def json_response(status: int, value: Any) -> Response:
    return respond(status, encoder.encode(value), "application/json")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})


async def route(rt: ServedRuntime, request: Request) -> Response:
    """Answer a plain (non-websocket) GET request."""
    url = urlsplit(request.path)
    path = url.path.rstrip("/") or "/"
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    try:
        if path in PAGES:
            return respond(200, *_page(PAGES[path]))
        if path == "/healthz":
            return json_response(200, {"status": "ok"})
        if path == "/api/queues":
            counts = await rt.queue_counts()
            return json_response(200, {"queues": counts})
        if path == "/metrics":
            body, content_type = await render_metrics(rt, request.headers.get("Accept", ""))
            return respond(200, body, content_type)
        if path == "/api/workers":
            return json_response(200, {"workers": await rt.workers()})
        if path == "/api/jobs":
            limit = _int_query(query, "limit", 50)
            tags, meta = _job_filters(url.query)
            jobs = await rt.list_jobs(
                queue=query.get("queue"),
                status=query.get("status"),
                limit=limit,
                cursor=query.get("cursor"),
                tags=tags,
                meta=meta,
            )
            return json_response(200, jobs_page(jobs, limit))
        if path.startswith("/api/jobs/"):
            job_id = path.removeprefix("/api/jobs/")
            return json_response(200, await rt.job(job_id))
    except (JobNotFound, QueueNotFound) as exc:
        return error_response(404, "not_found", str(exc))
    except ValidationError as exc:
        return error_response(400, "invalid", str(exc))
    except MissingExtra as exc:
        return error_response(501, "not_installed", str(exc))
    except ConveyorError as exc:
        return error_response(503, "unavailable", str(exc))
    except Exception:
        log.exception("GET %s failed", request.path)
        return error_response(500, "internal", "internal error; see the server's log")
    return error_response(404, "not_found", f"no such path: {path}")


def _int_query(query: dict[str, str], key: str, default: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    if len(text) > 20 or not text.isascii() or not text.lstrip("-").isdigit():
        raise ValidationError(f"{key} must be an integer, not {text[:40]!r}")
    return int(text)


def _job_filters(query: str) -> tuple[list[str], dict[str, str]]:
    """``tag=NAME`` (repeatable: jobs having every one) and ``meta.KEY=VALUE`` (one
    value per key) of /api/jobs, blank values kept (``meta.k=`` matches an empty
    value); the runtime checks what they hold, as for list_jobs."""
    tags: list[str] = []
    meta: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
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
