"""The websocket server over real connections: protocol, resume, bad input, security."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conveyor import JobStatus, Queue, Runtime, ValidationError

from ..conftest import wait_until

pytestmark = pytest.mark.anyio


class Payload(msgspec.Struct):
    n: int


class Work(Queue[Payload]):
    name = "work"
    worker_count = 4

    async def handle_item(self, item: Payload) -> dict[str, int]:
        self.report_progress(current=1, total=2, message="half")
        return {"double": item.n * 2}


class Hold(Queue):
    name = "hold"

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def handle_item(self, item: Any) -> None:
        await self.release.wait()


@pytest.fixture
async def rt(db_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(
        db_path, queues=[Work(), Hold()], serve=("127.0.0.1", 0), shutdown_grace=0
    ) as runtime:
        yield runtime


class Conn:
    """A raw protocol client: numbered requests, replies and events kept apart."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def raw(self, text: str | bytes) -> dict[str, Any]:
        await self.ws.send(text)
        return await self.reply()

    async def reply(self) -> dict[str, Any]:
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "event":
                self.events.append(message)
            else:
                return dict(message)

    async def call(self, op: str, **fields: Any) -> Any:
        self.next_id += 1
        reply = await self.raw(json.dumps({"id": self.next_id, "op": op, **fields}))
        assert reply["id"] == self.next_id
        if reply["type"] == "error":
            raise AssertionError(f"{reply['code']}: {reply['message']}")
        return reply["value"]

    async def event(self) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "event":
                return dict(message)


async def open_conn(rt: Runtime, **kwargs: Any) -> Conn:
    return Conn(await connect(rt.server_url, **kwargs))


async def test_enqueue_subscribe_and_watch_a_job(rt: Runtime) -> None:
    c = await open_conn(rt)
    sub = (await c.call("subscribe", queue="work"))["subscription"]
    job = await c.call("enqueue", queue="work", payload={"n": 21}, created_by="ws")
    assert job["status"] == "queued"
    assert job["created_by"] == "ws"
    seen = []
    with anyio.fail_after(10):
        while not seen or seen[-1]["status"] != "completed":
            event = await c.event()
            assert event["job_id"] == job["id"]
            assert event["subscription"] == sub
            assert event["event"] == "queue.job.changed"
            seen.append(event)
    statuses = [e["status"] for e in seen]
    assert statuses[0] == "queued"
    assert statuses[-1] == "completed"
    assert {"queued", "running", "completed"} == set(statuses)
    transitions = [e["seq"] for e in seen]
    assert transitions == sorted(transitions)
    done = await c.call("job_status", job_id=job["id"])
    assert done["result"] == {"double": 42}
    assert done["progress"] == {"current": 1, "total": 2, "message": "half"}
    history = (await c.call("history", job_id=job["id"]))["history"]
    assert [h["status"] for h in history] == ["queued", "running", "completed"]
    await c.ws.close()


async def test_enqueue_options_over_the_websocket(rt: Runtime) -> None:
    c = await open_conn(rt)
    job = await c.call(
        "enqueue", queue="work", payload={"n": 1}, delay=0.1, max_attempts=2, timeout=5
    )
    assert (job["status"], job["max_attempts"], job["timeout"]) == ("scheduled", 2, 5)
    assert job["scheduled_at"] is not None
    reply = await c.raw(
        json.dumps({"id": 3, "op": "enqueue", "queue": "work", "payload": {"n": 1}, "delay": -5})
    )
    assert (reply["code"], reply["id"]) == ("invalid", 3)
    with anyio.fail_after(10):
        assert (await rt.wait(job["id"])).status is JobStatus.COMPLETED
    await c.ws.close()


async def test_meta_and_tags_over_the_websocket_and_http(rt: Runtime) -> None:
    c = await open_conn(rt)
    acme = await c.call(
        "enqueue", queue="hold", payload=1, meta={"tenant": "acme"}, tags=["import", "import"]
    )
    assert (acme["meta"], acme["tags"]) == ({"tenant": "acme"}, ["import"])
    other = await c.call("enqueue", queue="hold", payload=2, tags=["import"])
    plain = await c.call("enqueue", queue="hold", payload=3)
    assert (plain["meta"], plain["tags"]) == ({}, [])

    async def listed(**filters: Any) -> list[str]:
        page = await c.call("list_jobs", **filters)
        return [j["id"] for j in page["jobs"]]

    assert await listed(tags=["import"]) == [other["id"], acme["id"]]
    assert await listed(meta={"tenant": "acme"}) == [acme["id"]]
    assert await listed(queue="hold", tags=["import"], meta={"tenant": "acme"}) == [acme["id"]]
    assert await listed(queue="hold", tags=[], meta={}) == [plain["id"], other["id"], acme["id"]]
    for fields, says in (
        ({"op": "enqueue", "queue": "hold", "payload": 1, "meta": {"a b": "x"}}, "meta key"),
        ({"op": "enqueue", "queue": "hold", "payload": 1, "tags": ["ok", ""]}, "tags[1]"),
        ({"op": "enqueue", "queue": "hold", "payload": 1, "meta": {"k": "\x00"}}, "meta['k']"),
        ({"op": "list_jobs", "tags": ["a" * 65]}, "tags[0]"),
        ({"op": "enqueue", "queue": "hold", "payload": 1, "meta": {"k": "v" * 5000}}, "meta"),
    ):
        reply = await c.raw(json.dumps({"id": 4, **fields}))
        assert (reply["code"], reply["id"]) == ("invalid", 4), reply
        assert reply["message"].startswith(says), reply
    reply = await c.raw(json.dumps({"id": 5, "op": "list_jobs", "meta": {"k": 1}}))
    assert (reply["code"], reply["id"]) == ("bad_request", 5)  # the wire's types: str to str
    assert "$.meta" in reply["message"]
    await c.ws.close()

    async def http_ids(query: str) -> list[str]:
        status, body = await http_get(rt, "/api/jobs?" + query)
        assert status == 200, body
        return [j["id"] for j in body["jobs"]]

    assert await http_ids("tag=import") == [other["id"], acme["id"]]
    assert await http_ids("tag=import&meta.tenant=acme&queue=hold") == [acme["id"]]
    assert await http_ids("meta.tenant=") == []  # blank is a value: none has it
    for query, says in (
        ("tag=a%20b", "tags[0]"),
        ("tag=", "tags[0]"),
        ("meta.a%20b=x", "meta key"),
        ("meta.=x", "meta key"),
        ("meta=tenant", "meta.KEY=VALUE"),
        ("meta.k=1&meta.k=2", "given twice"),
        ("meta.k=%00", "meta['k']"),
    ):
        status, body = await http_get(rt, "/api/jobs?" + query)
        assert (status, body["error"]) == (400, "invalid"), (query, body)
        assert says in body["message"], (query, body)


async def test_list_cancel_rerun_unsubscribe(rt: Runtime) -> None:
    c = await open_conn(rt)
    held = [await c.call("enqueue", queue="hold", payload=i) for i in range(3)]
    page = await c.call("list_jobs", queue="hold", limit=2)
    assert [j["id"] for j in page["jobs"]] == [held[2]["id"], held[1]["id"]]
    rest = await c.call("list_jobs", queue="hold", limit=2, cursor=page["cursor"])
    assert [j["id"] for j in rest["jobs"]] == [held[0]["id"]]
    assert rest["cursor"] is None
    cancelled = await c.call("cancel", job_id=held[2]["id"])
    assert cancelled["status"] == "cancelled"
    again = await c.call("rerun", job_id=held[2]["id"], by="ops")
    assert again["status"] == "queued"
    sub = (await c.call("subscribe", job_id=held[0]["id"]))["subscription"]
    assert await c.call("unsubscribe", subscription=sub) == {}
    reply = await c.raw(json.dumps({"id": 9, "op": "unsubscribe", "subscription": sub}))
    assert reply["code"] == "invalid"
    await c.ws.close()


@pytest.mark.parametrize(
    ("message", "code", "rid", "words"),
    [
        ("not json", "bad_json", None, "JSON"),
        ("[1, 2]", "bad_request", None, "object"),
        ('{"id": 5}', "bad_request", 5, "op"),
        ('{"id": 6, "op": "explode"}', "unknown_op", 6, "explode"),
        ('{"id": "x", "op": "job_status"}', "bad_request", "x", "job_id"),
        ('{"id": 7, "op": "job_status", "job_id": 12}', "bad_request", 7, "$.job_id"),
        ('{"id": 8, "op": "enqueue", "queue": "nope", "payload": {}}', "unknown_queue", 8, "nope"),
        ('{"id": 9, "op": "job_status", "job_id": "missing"}', "unknown_job", 9, "missing"),
        (
            '{"id": 10, "op": "enqueue", "queue": "work", "payload": {"n": "x"}}',
            "invalid",
            10,
            "$.n",
        ),
        ('{"id": 11, "op": "list_jobs", "limit": 0}', "invalid", 11, "limit"),
        ('{"id": 12, "op": "list_jobs", "status": "asleep"}', "bad_request", 12, "status"),
        ('{"id": 13, "op": "rerun", "job_id": "missing"}', "unknown_job", 13, "missing"),
        ('{"id": 14, "op": "subscribe", "queue": "nope"}', "unknown_queue", 14, "nope"),
    ],
)
async def test_bad_requests_get_error_replies_and_the_connection_stays(
    rt: Runtime, message: str, code: str, rid: Any, words: str
) -> None:
    c = await open_conn(rt)
    reply = await c.raw(message)
    assert reply["type"] == "error"
    assert (reply["code"], reply["id"]) == (code, rid)
    assert words in reply["message"]
    assert (await c.call("list_jobs"))["jobs"] == []  # still serving
    await c.ws.close()


async def test_an_oversized_message_is_refused_with_a_reply(rt: Runtime) -> None:
    c = await open_conn(rt)
    big = json.dumps({"id": 1, "op": "enqueue", "queue": "work", "payload": "x" * (1 << 20)})
    reply = await c.raw(big)
    assert (reply["code"], reply["id"]) == ("too_large", None)
    assert await c.call("list_jobs") == {"jobs": [], "cursor": None}
    await c.ws.close()


# `since` as a number, or as its digits (what a JavaScript client sends: seqs on
# PostgreSQL pass what its numbers hold exactly).
@pytest.mark.parametrize("as_digits", [False, True])
async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(
    rt: Runtime, as_digits: bool
) -> None:
    c = await open_conn(rt)
    await c.call("subscribe", queue="work")
    first = await c.call("enqueue", queue="work", payload={"n": 1})
    with anyio.fail_after(10):
        event = await c.event()
        while not (event["job_id"] == first["id"] and event["status"] == "completed"):
            event = await c.event()
    last_seq = event["seq"]
    await c.ws.close()
    # Jobs run while nobody listens.
    missed = await rt.enqueue_many("work", [{"n": i} for i in range(5)])
    for job in missed:
        await rt.wait(job.id, timeout=10)
    c = await open_conn(rt)
    await c.call("subscribe", queue="work", since=str(last_seq) if as_digits else last_seq)
    live = await rt.enqueue("work", {"n": 99})
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while not (got and got[-1]["job_id"] == live.id and got[-1]["status"] == "completed"):
            got.append(await c.event())
    transitions = [(e["seq"], e["job_id"], e["status"]) for e in got if e["status"] != "running"]
    expected = [
        (h.seq, job.id, h.status.value)
        for job in [*missed, live]
        for h in await rt.history(job.id)
        if h.status is not JobStatus.RUNNING
    ]
    assert transitions == sorted(expected)
    running = {e["job_id"] for e in got if e["status"] == "running"}
    assert running == {j.id for j in [*missed, live]}
    await c.ws.close()


async def test_since_past_the_largest_seq_or_not_digits_is_refused(rt: Runtime) -> None:
    c = await open_conn(rt)
    for since in ("9223372036854775808", "12a", "-1", "", "1" * 20, 2**63, -1):
        reply = await c.raw(json.dumps({"id": 1, "op": "subscribe", "since": since}))
        assert reply["type"] == "error", since
        assert "since" in reply["message"], reply
    await c.ws.close()


async def test_two_hundred_clients_all_get_every_event(rt: Runtime) -> None:
    clients = [await open_conn(rt) for _ in range(200)]
    for c in clients:
        await c.call("subscribe", queue="work", statuses=["completed"])
    jobs = await rt.enqueue_many("work", [{"n": i} for i in range(5)])
    want = {j.id for j in jobs}

    async def collect(c: Conn) -> None:
        got = set()
        while got != want:
            event = await c.event()
            assert event["status"] == "completed"
            got.add(event["job_id"])

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for c in clients:
                tg.start_soon(collect, c)
    for c in clients:
        await c.ws.close()


def silent_subscriber(url: str) -> socket.socket:
    """A websocket client that subscribes to everything and then never reads a byte.

    Done by hand on a raw socket with a tiny receive buffer: a websockets client would
    keep reading into its own memory, and so would never look stuck to the server.
    """
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101")
    payload = b'{"id": 1, "op": "subscribe"}'
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_a_client_that_never_reads_is_dropped_and_stalls_nobody(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    assert rt._server is not None
    rt._server.max_buffer = 600  # above one commit's burst of a status, well below the load
    stuck = await anyio.to_thread.run_sync(silent_subscriber, rt.server_url)
    good = await open_conn(rt)
    await good.call("subscribe", statuses=["completed"])
    received = b""

    async def drain_once_dropped() -> None:
        # A slow client, not a dead one: it reads again a few seconds after the server
        # gave up on it (longer than an ordinary close waits), and still gets the 4008.
        nonlocal received
        await wait_until(lambda: "fell more than 600" in caplog.text)
        await anyio.sleep(3)  # the point of the test: a reader that comes back late
        received = await anyio.to_thread.run_sync(read_to_eof, stuck)

    with anyio.fail_after(60), stuck:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain_once_dropped)
            # Enough events to fill the kernel's socket buffers (megabytes), then ours.
            jobs = await rt.enqueue_many("work", [{"n": i} for i in range(15000)])
            for _ in jobs:  # the other client hears every completion meanwhile
                assert (await good.event())["status"] == "completed"
    close_frame = b"\x88" + bytes([2 + len(b"too slow: event buffer overflowed")])
    assert close_frame + (4008).to_bytes(2, "big") + b"too slow" in received[-64:]
    await good.ws.close()


async def test_garbage_never_crashes_the_server(rt: Runtime) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=10,
    )
    from conveyor._wire import OPS

    ops = st.sampled_from(sorted(OPS))  # every op, pause and resume included
    requests = st.fixed_dictionaries(
        {"op": ops | json_values},
        optional={
            "id": json_values,
            "queue": json_values | st.just("work"),
            "job_id": json_values,
            "by": json_values,
        },
    ).map(json.dumps)
    messages = st.text() | st.binary() | json_values.map(json.dumps) | requests
    c = await open_conn(rt)
    received: list[str] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages)
    def fuzz(message: str | bytes) -> None:
        received.append(message if isinstance(message, str) else repr(message))
        anyio.from_thread.run(_one_reply, c, message)

    await anyio.to_thread.run_sync(fuzz)
    assert len(received) >= 100
    assert await c.call("list_jobs", queue="work", limit=1) is not None
    await c.ws.close()


async def _one_reply(c: Conn, message: str | bytes) -> None:
    with anyio.fail_after(5):
        reply = await c.raw(message)
    assert reply["type"] in ("result", "error")


async def test_token_is_required_off_loopback_and_checked(db_path: Path) -> None:
    with pytest.raises(ValidationError, match="token"):
        Runtime(db_path, queues=[Work()], serve=("0.0.0.0", 0))
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0), token="s3cret") as rt:
        with pytest.raises(InvalidStatus) as refused:
            await connect(rt.server_url)
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(rt.server_url, additional_headers={"Authorization": "Bearer nope"})
        by_header = await open_conn(rt, additional_headers={"Authorization": "Bearer s3cret"})
        assert await by_header.call("list_jobs") == {"jobs": [], "cursor": None}
        await by_header.ws.close()
        by_query = Conn(await connect(rt.server_url + "/?token=s3cret"))
        assert await by_query.call("list_jobs") == {"jobs": [], "cursor": None}
        await by_query.ws.close()
        status, _ = await http_get(rt, "/api/jobs")
        assert status == 401
        status, _ = await http_get(rt, "/api/jobs?token=s3cret")
        assert status == 200
        status, _ = await http_get(rt, "/healthz")
        assert status == 200
        status, page = await http_get(rt, "/")  # no data in it: it asks for the token
        assert status == 200
        assert "token" in page


async def test_browser_origin_must_match(rt: Runtime) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(rt.server_url, origin="http://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    own = rt.server_url.replace("ws://", "http://")
    c = await open_conn(rt, origin=own)
    assert await c.call("list_jobs") == {"jobs": [], "cursor": None}
    await c.ws.close()


async def http_get(rt: Runtime, path: str) -> tuple[int, Any]:
    url = rt.server_url.replace("ws://", "http://") + path

    def fetch() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
                kind = response.headers["Content-Type"]
                return response.status, json.loads(body) if "json" in kind else body.decode()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await anyio.to_thread.run_sync(fetch)


async def test_http_endpoints(rt: Runtime) -> None:
    job = await rt.enqueue("work", {"n": 2})
    await rt.wait(job.id, timeout=10)
    held = await rt.enqueue("hold", None)
    status, page = await http_get(rt, "/")
    assert status == 200
    assert "<title>conveyor</title>" in page
    status, body = await http_get(rt, "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await http_get(rt, "/api/jobs?queue=work")
    assert status == 200
    assert [j["id"] for j in body["jobs"]] == [job.id]
    status, body = await http_get(rt, f"/api/jobs/{job.id}")
    assert status == 200
    assert body["result"] == {"double": 4}
    status, body = await http_get(rt, "/api/queues")
    assert status == 200
    assert body["queues"]["work"]["completed"] == 1
    assert body["queues"]["hold"]["queued"] + body["queues"]["hold"]["running"] == 1
    assert held.id
    for path, code in [
        ("/api/jobs/nope", 404),
        ("/nothing-here", 404),
        ("/api/jobs?status=asleep", 400),
        ("/api/jobs?limit=abc", 400),
        ("/api/jobs?queue=nope", 404),
    ]:
        status, body = await http_get(rt, path)
        assert status == code, path
        assert body["message"]


async def test_the_message_limit_is_configurable(db_path: Path) -> None:
    async with Runtime(
        db_path, queues=[Work()], serve=("127.0.0.1", 0), max_message_bytes=100
    ) as rt:
        c = await open_conn(rt)
        reply = await c.raw(json.dumps({"id": 1, "op": "job_status", "job_id": "x" * 100}))
        assert reply["code"] == "too_large"
        assert "100-byte limit" in reply["message"]
        reply = await c.raw(json.dumps({"id": 2, "op": "job_status", "job_id": "x"}))
        assert reply["code"] == "unknown_job"
        await c.ws.close()


async def test_server_url_and_shutdown_close_connections(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0)) as rt:
        assert rt.server_url.startswith("ws://127.0.0.1:")
        c = await open_conn(rt)
        await c.call("subscribe")
    with anyio.fail_after(10), pytest.raises(ConnectionClosed):
        await c.ws.recv()


async def test_a_port_in_use_is_a_plain_oserror(db_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="address already in use"):
            async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", port)):
                pass


async def test_subscribers_see_the_jobs_a_stop_puts_back_before_the_server_closes(
    db_path: Path,
) -> None:
    hold = Hold()
    rt = Runtime(db_path, queues=[hold], serve=("127.0.0.1", 0), shutdown_grace=0)
    async with rt:
        c = await open_conn(rt)
        await c.call("subscribe")
        job = await rt.enqueue("hold", {})
        with anyio.fail_after(10):
            while (await c.event())["status"] != "running":
                pass
    # The runtime is gone; what it sent before closing is still readable.
    statuses: list[str] = []
    with anyio.fail_after(10):
        try:
            while True:
                event = await c.event()
                if event["job_id"] == job.id:
                    statuses.append(event["status"])
        except ConnectionClosed:
            pass
    assert "queued" in statuses  # put back as the worker stopped, and said so
