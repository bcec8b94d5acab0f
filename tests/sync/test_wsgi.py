"""A real WSGI app (wsgiref's threading server) whose Flask-style views enqueue through
one module-level conveyor.sync.Client, or one Producer, shared by all request threads;
hit with urllib from several threads at once, the jobs run in a worker process."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from conveyor import ConveyorError, ValidationError
from conveyor.sync import Client, Producer

from ..worker_app import QUEUES
from .conftest import Process, in_threads

pytestmark = [pytest.mark.timeout(120)]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def app_for(jobs: Client | Producer) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app with the views a Flask app would have: POST /exports enqueues the
    request's JSON and answers the job id; GET /exports/<id> answers its status
    (``?wait=S``: once it ended, waiting up to S seconds)."""

    def export(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        job = jobs.enqueue("work", body, created_by="web")
        return 202, {"job_id": job.id}

    def status(job_id: str, wait: str | None) -> tuple[int, dict[str, Any]]:
        job = jobs.job(job_id) if wait is None else jobs.wait(job_id, timeout=float(wait))
        return 200, {"status": job.status, "result": job.result}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        try:
            if method == "POST" and path == "/exports":
                size = int(environ.get("CONTENT_LENGTH") or 0)
                code, reply = export(json.loads(environ["wsgi.input"].read(size)))
            elif method == "GET" and path.startswith("/exports/"):
                wait = parse_qs(environ.get("QUERY_STRING", "")).get("wait")
                code, reply = status(path.removeprefix("/exports/"), wait and wait[0])
            else:
                code, reply = 404, {"error": "no such page"}
        except ValidationError as exc:
            code, reply = 400, {"error": str(exc)}
        except ConveyorError as exc:
            code, reply = 404 if isinstance(exc, LookupError) else 503, {"error": str(exc)}
        start_response(f"{code} X", [("Content-Type", "application/json")])
        return [json.dumps(reply).encode()]

    return app


@pytest.fixture(params=["client", "producer"])
def site(request: pytest.FixtureRequest, location: str, server: str) -> Iterator[str]:
    """The app's address, its views enqueueing through a Client (to the server) or a
    Producer (into the database)."""
    jobs: Client | Producer = (
        Client(server) if request.param == "client" else Producer(location, QUEUES)
    )
    httpd = make_server(
        "127.0.0.1", 0, app_for(jobs), server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    jobs.close()


def call(url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_views_enqueue_from_many_request_threads(site: str, worker: Process) -> None:
    threads, each = 6, 10
    answers = [
        answer
        for per in in_threads(
            threads,
            lambda n: [call(f"{site}/exports", {"sleep": 0, "who": [n, i]}) for i in range(each)],
        )
        for answer in per
    ]
    assert [code for code, _ in answers] == [202] * threads * each
    ids = {reply["job_id"] for _, reply in answers}
    assert len(ids) == threads * each
    for job_id in ids:  # a long poll: the view waits for the job, bounded
        assert call(f"{site}/exports/{job_id}?wait=30") == (
            200,
            {"status": "completed", "result": {"pid": worker.proc.pid}},
        )
    assert call(f"{site}/exports", {"x": float("nan")})[0] == 400  # refused, named
    assert call(f"{site}/exports/nope") == (404, {"error": "unknown job 'nope'"})
