"""conveyor.sync.Client from plain threads, against a real server process with real
worker processes, on SQLite and PostgreSQL: every call, typed errors, one client shared
by many threads, events as a blocking iterator, and bounded waits."""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from conveyor import (
    InvalidTransition,
    JobNotFound,
    JobStatus,
    QueueNotFound,
    ServerError,
    ValidationError,
    WaitTimeout,
)
from conveyor import client as async_client
from conveyor.sync import Client

from .conftest import Process, Server, in_threads

pytestmark = [pytest.mark.timeout(120)]


def test_calls_round_trip(server: str, worker: Process) -> None:
    with Client(server) as client:
        job = client.enqueue("work", {"sleep": 0}, created_by="sync")
        assert (job.status, job.created_by) == (JobStatus.QUEUED, "sync")
        done = client.wait(job.id, timeout=30)
        assert done.status is JobStatus.COMPLETED
        assert done.result["pid"] == worker.proc.pid  # a worker process ran it
        assert client.job(job.id) == done
        assert client.job_status("work", job.id) == done
        assert [h.status for h in client.history(job.id)] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        later = client.enqueue("work", {}, delay=timedelta(hours=1), priority=3)
        assert (later.status, later.priority) == (JobStatus.SCHEDULED, 3)
        assert client.request_job_cancel("work", later.id).status is JobStatus.CANCELLED
        held = client.enqueue("work", {"block": True})
        assert client.cancel(held.id).status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
        assert client.wait(held.id, timeout=30).status is JobStatus.CANCELLED
        assert client.rerun(later.id, by="me").status is JobStatus.QUEUED
        requeued = [h for h in client.history(later.id) if h.status is JobStatus.QUEUED]
        assert requeued[-1].message == "rerun by me"  # (a worker may have it running now)
        assert client.wait(later.id, timeout=30).status is JobStatus.COMPLETED
        assert {j.id for j in client.list_jobs(queue="work", limit=10)} == {
            job.id,
            later.id,
            held.id,
        }
        assert client.queue_counts()["work"][JobStatus.COMPLETED] == 2
        paused = client.pause("work", by="ops")
        assert (paused.name, paused.paused, paused.paused_by) == ("work", True, "ops")
        waiting = client.enqueue("work", {})
        assert {s.name: s.paused for s in client.queue_states()}["work"] is True
        assert client.resume("work").paused is False
        assert client.wait(waiting.id, timeout=30).status is JobStatus.COMPLETED
        [me] = client.workers()
        assert (me.pid, me.lost) == (worker.proc.pid, False)
        batch = [client.enqueue("work", {"block": True}, created_by="batch") for _ in range(3)]
        assert client.cancel_matching(queue="work", created_by="batch") == 3
        for j in batch:
            client.wait(j.id, timeout=30)
        assert client.rerun_matching(queue="work", statuses=["cancelled"], by="me") == 4
        assert client.cancel_matching(queue="work") >= 4
        assert client.purge(statuses=["completed"], queue="work") == 3
        # Job metadata: kept as checked, and list_jobs's filters find the job by it.
        tagged = client.enqueue("work", {}, delay=3600, meta={"tenant": "acme"}, tags=("x", "x"))
        assert (tagged.meta, tagged.tags) == ({"tenant": "acme"}, ["x"])
        found = client.list_jobs(tags=["x"], meta={"tenant": "acme"})
        assert [j.id for j in found] == [tagged.id]
        assert client.list_jobs(tags=["x"], meta={"tenant": "other"}) == []
        with pytest.raises(ValidationError, match=r"^meta"):
            client.list_jobs(meta={"a b": "v"})
        with pytest.raises(ValidationError, match=r"^tags"):
            client.enqueue("work", {}, tags=[""])


def test_the_sync_and_the_async_client_have_the_same_methods_and_signatures() -> None:
    public = {n for n in vars(async_client.Client) if not n.startswith("_")}
    assert public <= set(dir(Client))
    for op in public:
        sync_params = inspect.signature(getattr(Client, op)).parameters
        async_params = inspect.signature(getattr(async_client.Client, op)).parameters
        extra = ["timeout"] if op == "events" else []  # the wait for each next event
        assert list(sync_params) == [*async_params, *extra], op
        for param, spec in async_params.items():
            assert sync_params[param].default == spec.default, (op, param)
            assert sync_params[param].kind == spec.kind, (op, param)


def test_many_threads_share_one_client_and_every_job_is_stored_once(
    server: str, worker: Process
) -> None:
    threads, each = 8, 25
    with Client(server) as client:
        ids = in_threads(
            threads,
            lambda n: [client.enqueue("work", {"thread": n, "i": i}).id for i in range(each)],
        )
        flat = [job_id for per in ids for job_id in per]
        assert len(set(flat)) == threads * each
        stored = list_all(client)
        assert sorted(j.id for j in stored) == sorted(flat)
        payloads = sorted((j.payload["thread"], j.payload["i"]) for j in stored)
        assert payloads == [(n, i) for n in range(threads) for i in range(each)]
        for job_id in flat[:: each // 5]:
            assert client.wait(job_id, timeout=60).status is JobStatus.COMPLETED


def list_all(client: Client) -> list[Any]:
    jobs: list[Any] = []
    cursor = None
    while True:
        page = client.list_jobs(limit=1000, cursor=cursor)
        jobs += page
        if len(page) < 1000:
            return jobs
        cursor = page[-1].id


def test_events_are_a_blocking_iterator(server: str, worker: Process) -> None:
    with Client(server) as client, client.events(queue="work", timeout=30) as events:
        # Slow steps: a worker process's reports reach the server through the store,
        # written every progress_interval (0.25 s).
        job = client.enqueue("work", {"steps": 3, "every": 0.6})
        seen: list[tuple[JobStatus, str | None]] = []
        for event in events:
            assert event.job_id == job.id
            seen.append((event.status, event.progress.message))
            if event.status.is_terminal:
                break
        statuses = [s for s, _ in seen]
        assert statuses[0] is JobStatus.QUEUED
        assert statuses[-1] is JobStatus.COMPLETED
        assert (JobStatus.RUNNING, "step 2") in seen  # progress reports come through
        # since=: the transitions after a seq, replayed from the store.
        first = client.history(job.id)[0].seq
        with client.events(job_id=job.id, since=first, timeout=10) as replay:
            assert next(replay).status is JobStatus.RUNNING


def test_an_events_iterator_times_out_and_closes_from_another_thread(server: str) -> None:
    with Client(server) as client:
        with client.events(queue="work", timeout=0.3) as events:
            started = time.monotonic()
            with pytest.raises(WaitTimeout):
                next(events)
            assert time.monotonic() - started < 5
        events = client.events(queue="work")
        with events:
            threading.Timer(0.3, events.close).start()
            started = time.monotonic()
            assert list(events) == []  # closed: the iteration ends, no error
            assert time.monotonic() - started < 5


def test_events_survive_a_server_restart(location: str, worker: Process) -> None:
    first = Server(location)
    port = first.url.rsplit(":", 1)[1]
    try:
        with Client(first.url) as client, client.events(queue="work", timeout=30) as events:
            job = client.enqueue("work", {"sleep": 0})
            assert next(events).status is JobStatus.QUEUED
            first.stop()
            # A new server on the same port; the iterator reconnects and resumes after
            # the last seq it saw: the job's later transitions, none repeated.
            second = restart_on(location, int(port))
            try:
                rest = []
                for event in events:
                    rest.append(event.status)
                    if event.status.is_terminal:
                        break
                assert rest == [JobStatus.RUNNING, JobStatus.COMPLETED]
                assert client.job(job.id).status is JobStatus.COMPLETED  # re-connected
            finally:
                second.stop()
    finally:
        first.stop()


def restart_on(location: str, port: int) -> Process:
    """server_app.py again, on a given port (the old one's, freed)."""
    code = (
        "import sys, anyio; sys.path.insert(0, 'tests')\n"
        "from worker_app import QUEUES\n"
        "from conveyor import Runtime\n"
        "async def main():\n"
        f"    async with Runtime({location!r}, queues=QUEUES, workers=False,"
        f" serve=('127.0.0.1', {port})) as rt:\n"
        "        print('url', rt.server_url, flush=True)\n"
        "        await rt.run_until_signalled()\n"
        "anyio.run(main)\n"
    )
    deadline = time.monotonic() + 20
    while True:
        process = Process("-c", code)
        try:
            process.line(lambda line: line.startswith("url "))
            return process
        except AssertionError:  # the port not free yet
            process.stop()
            if time.monotonic() > deadline:
                raise


def test_errors_are_typed_as_the_async_clients(server: str) -> None:
    with Client(server) as client:
        with pytest.raises(QueueNotFound, match="nope"):
            client.enqueue("nope", {})
        with pytest.raises(JobNotFound, match="missing"):
            client.job("missing")
        with pytest.raises(ValidationError, match="limit"):
            client.list_jobs(limit=0)
        with pytest.raises(ValidationError, match="priority"):
            client.enqueue("work", {}, priority="high")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="statuses"):
            client.events(statuses=["bogus"])
        job = client.enqueue("work", {}, delay=3600)
        with pytest.raises(InvalidTransition):
            client.rerun(job.id)
        with pytest.raises(WaitTimeout):
            client.wait(job.id, timeout=0.2)
    with pytest.raises(ServerError, match="closed"):
        client.job(job.id)


def test_a_wrong_token_is_refused(location: str) -> None:
    server = Server(location, token="secret")
    try:
        with pytest.raises(ServerError) as refused, Client(server.url, token="wrong"):
            pass
        assert refused.value.code == "http_401"
        with pytest.raises(ServerError, match="http_401"):
            next(Client(server.url, token="wrong").events())
        with Client(server.url, token="secret") as client:
            assert client.list_jobs() == []
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_a_server_error() -> None:
    client = Client(f"ws://127.0.0.1:{free_port()}", request_timeout=2)
    with pytest.raises(ServerError) as unreachable:
        client.job("x")
    assert unreachable.value.code == "unreachable"


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[ServerConnection]]]:
    """A websocket server that takes every request and never answers one (what a server
    stuck on a lock looks like from here) — a stand-in, since no real conveyor server
    can be made to hang on purpose; and that closes the connection on a "close" op."""
    connections: list[ServerConnection] = []

    def handler(ws: ServerConnection) -> None:
        connections.append(ws)
        for message in ws:
            if '"op":"job_status"' in str(message) and '"close"' in str(message):
                ws.close()

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{srv.socket.getsockname()[1]}", connections
        srv.shutdown()


def test_every_request_is_bounded_by_the_request_timeout(
    silent_server: tuple[str, list[ServerConnection]],
) -> None:
    url, _ = silent_server
    with Client(url, request_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ServerError) as timed_out:
            client.job("anything")
        assert timed_out.value.code == "timeout"
        assert 0.3 <= time.monotonic() - started < 3
        # A connection the server closes fails its waiting request at once, and the
        # next request goes out on a new connection.
        started = time.monotonic()
        with pytest.raises(ServerError) as dropped:
            client.job("close")
        assert dropped.value.code == "disconnected"
        assert time.monotonic() - started < 0.3
        with pytest.raises(ServerError, match="timeout"):
            client.job("again")


def test_the_constructor_checks_its_arguments() -> None:
    for kwargs in (
        {"url": "nonsense"},
        {"url": 5},
        {"request_timeout": 0},
        {"request_timeout": "1"},
        {"min_backoff": -1},
        {"min_backoff": 5, "max_backoff": 1},
        {"max_message_bytes": "big"},
        {"max_message_bytes": 10},
    ):
        with pytest.raises(ValidationError, match=next(iter(kwargs))):
            Client(**{"url": "ws://127.0.0.1:1", **kwargs})
