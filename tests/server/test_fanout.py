"""The server's fan-out over real connections: idle clients are written to in one
broadcast per event, a client that falls behind gets its events through its own bounded
buffer, and the switch between the two loses, repeats and reorders nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from conveyor import Queue, Runtime

from ..conftest import wait_until

pytestmark = pytest.mark.anyio

REPORTS = 20_000  # about 4 MB of events: past the kernel's socket buffers and the write limit


class Work(Queue):
    """Reports ``item["reports"]`` times; with ``item["gated"]``, once ``go`` is set (the
    test sets it on the job's "running" event: a run may begin before its claim's commit
    is made, and its reports before that event are folded into it)."""

    name = "work"
    worker_count = 4

    def __init__(self) -> None:
        self.go = anyio.Event()

    async def handle_item(self, item: Any) -> None:
        if item.get("gated"):
            await self.go.wait()
        for i in range(item["reports"]):
            self.report_progress(current=i, total=item["reports"])
            if i % 100 == 0:
                await anyio.lowlevel.checkpoint()


@pytest.fixture
def work() -> Work:
    return Work()


@pytest.fixture
async def rt(db_path: Path, work: Work) -> AsyncIterator[Runtime]:
    async with Runtime(db_path, queues=[work], serve=("127.0.0.1", 0), shutdown_grace=0) as runtime:
        yield runtime


class SlowReader:
    """A websocket client on a raw socket with a tiny receive buffer, which reads only
    when told to: a websockets client would read into its own memory at once, so the
    server would never see it fall behind."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("ws://").partition(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.sock.connect((host, int(port)))
        self.sock.settimeout(20)
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101")
        self.data = bytearray()
        self.at = 0  # where the next frame starts in data

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _take(self, n: int) -> bytes:
        while len(self.data) - self.at < n:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the server closed the connection"
            del self.data[: self.at]
            self.at = 0
            self.data += chunk
        self.at += n
        return bytes(self.data[self.at - n : self.at])

    def message(self) -> dict[str, Any]:
        """The next text message (server frames are unmasked; pings are skipped)."""
        while True:
            opcode, length = self._take(2)
            length &= 0x7F
            if length == 126:
                length = int.from_bytes(self._take(2), "big")
            elif length == 127:
                length = int.from_bytes(self._take(8), "big")
            payload = self._take(length)
            if opcode & 0x0F == 0x1:
                return dict(json.loads(payload))


async def test_a_client_that_falls_behind_and_catches_up_misses_nothing(
    rt: Runtime, work: Work
) -> None:
    assert rt._server is not None
    rt._server.max_buffer = 2 * REPORTS  # room for every event: none coalesces or overflows
    slow = await anyio.to_thread.run_sync(SlowReader, rt.server_url)
    slow.send({"id": 1, "op": "subscribe", "queue": "work"})
    async with connect(rt.server_url) as fast:
        await fast.send(json.dumps({"id": 1, "op": "subscribe", "queue": "work"}))
        with anyio.fail_after(60):
            assert (await anyio.to_thread.run_sync(slow.message))["type"] == "result"
            assert json.loads(await fast.recv())["type"] == "result"

            async def run_job(reports: int) -> list[tuple[str, int, float]]:
                """Until the idle client has every event of a job: their (status, seq,
                progress)."""
                work.go = anyio.Event()
                job = await rt.enqueue("work", {"reports": reports, "gated": True})
                got: list[tuple[str, int, float]] = []
                while not got or got[-1][0] != "completed":
                    e = json.loads(await fast.recv())
                    assert e["job_id"] == job.id
                    got.append((e["status"], e["seq"], e["progress"].get("current", 0)))
                    if e["status"] == "running":
                        work.go.set()
                return got

            def read(count: int) -> list[tuple[str, int, float]]:
                events = [slow.message() for _ in range(count)]
                return [(e["status"], e["seq"], e["progress"].get("current", 0)) for e in events]

            fast_got: list[tuple[str, int, float]] = []

            async def run_one() -> None:
                fast_got.extend(await run_job(REPORTS))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run_one)  # the slow client reads nothing meanwhile
                # Its subscription falls back to its buffer (the write buffer is high)...
                await wait_until(lambda: any(len(s._buffer) > 0 for s in rt.bus._all))
            # ...and, once it reads, gets exactly what the idle client got, in order.
            assert await anyio.to_thread.run_sync(read, len(fast_got)) == fast_got
            # Reports made before the "running" event went out are folded into it.
            statuses = [status for status, _, _ in fast_got]
            assert statuses[-1] == "completed"
            reports = [current for _, _, current in fast_got[statuses.index("running") + 1 : -1]]
            assert reports  # and after it, none lost, repeated or out of order:
            assert reports == list(range(REPORTS - len(reports), REPORTS))
            # Caught up, it is back on the fast path, and still in step.
            await wait_until(lambda: all(s.sink and not s._buffer for s in rt.bus._all))
            again = await run_job(10)
            assert await anyio.to_thread.run_sync(read, len(again)) == again
    slow.sock.close()


async def test_many_idle_clients_each_get_every_event_once_in_order(rt: Runtime) -> None:
    clients = [await connect(rt.server_url) for _ in range(50)]
    for n, ws in enumerate(clients):
        # Some clients hold two subscriptions: each event comes once per subscription,
        # with that subscription's id (one broadcast per id).
        await ws.send(json.dumps({"id": 1, "op": "subscribe", "statuses": ["completed"]}))
        if n % 2:
            await ws.send(json.dumps({"id": 2, "op": "subscribe", "queue": "work"}))
    with anyio.fail_after(30):
        for n, ws in enumerate(clients):
            for _ in range(1 + n % 2):
                assert json.loads(await ws.recv())["type"] == "result"
        jobs = await rt.enqueue_many("work", [{"reports": 3} for _ in range(20)])

        async def collect(n: int, ws: Any) -> None:
            completed: dict[str, list[str]] = {"s1": [], "s2": []}
            while len(completed["s1"]) < len(jobs) or (n % 2 and len(completed["s2"]) < len(jobs)):
                event = json.loads(await ws.recv())
                if event["status"] == "completed":
                    completed[event["subscription"]].append(event["job_id"])
            assert sorted(completed["s1"]) == sorted(j.id for j in jobs)
            assert completed["s2"] == (completed["s1"] if n % 2 else [])

        async with anyio.create_task_group() as tg:
            for n, ws in enumerate(clients):
                tg.start_soon(collect, n, ws)
    for ws in clients:
        await ws.close()
