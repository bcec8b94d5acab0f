"""Load on the server: many subscribers while jobs run, clients that stop reading
(half-open: subscribed, then never a byte read), and a client that sends its HTTP header
a byte at a time. Every reading subscriber hears every completion, the stuck ones are
closed, and the server's memory stays bounded."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from websockets.asyncio.client import connect

from conveyor import Runtime

from ..conftest import wait_until
from ..server.test_server import silent_subscriber
from .conftest import SOAK, Child, scaled
from .worker import Noop

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(scaled(240, 3600))]

SUBSCRIBERS = scaled(300, 2000)
HALF_OPEN = scaled(20, 100)
JOBS = scaled(2000, 10_000)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def slow_header(host: str, port: int, stop: Callable[[], bool]) -> float:
    """Send a request's header one byte every 0.2 s; return how long the server let it."""
    start = time.monotonic()
    request = b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
    with socket.create_connection((host, port), timeout=30) as sock:
        for byte in request:
            if stop():
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break  # closed by the server: what we wait for
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                if sock.recv(1024) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            finally:
                sock.setblocking(True)
    return time.monotonic() - start


async def test_many_subscribers_stuck_clients_and_a_slow_header(
    tmp_path: Path, children: Callable[..., Child], figure: Callable[..., None]
) -> None:
    db = str(tmp_path / "load.db")
    server = children("worker.py", db, "--serve", "0")
    with anyio.fail_after(30):
        await wait_until(lambda: "serving ws://" in server.output(), 0.05)
    url = server.output().split("serving ", 1)[1].split()[0]
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    rss_before = peak_rss_mb(server.pid)
    counts = [0] * SUBSCRIBERS
    done = anyio.Event()
    slow_seconds = 0.0

    async def subscriber(
        index: int, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"id": 1, "op": "subscribe", "statuses": ["completed"]}))
            await ws.recv()
            task_status.started()
            async for message in ws:
                if json.loads(message).get("type") == "event":
                    counts[index] += 1
                    if counts[index] == JOBS:
                        return

    stuck = [await anyio.to_thread.run_sync(silent_subscriber, url) for _ in range(HALF_OPEN)]
    try:
        with anyio.fail_after(scaled(200, 3500)):
            async with anyio.create_task_group() as tg:
                for i in range(SUBSCRIBERS):
                    await tg.start(subscriber, i)

                async def run_slow_header() -> None:
                    nonlocal slow_seconds
                    slow_seconds = await anyio.to_thread.run_sync(
                        slow_header, host, int(port), done.is_set
                    )

                tg.start_soon(run_slow_header)
                start = time.monotonic()
                async with Runtime(db, queues=[Noop()], workers=False) as producer:
                    for chunk in range(0, JOBS, 500):
                        await producer.enqueue_many("noop", [chunk + i for i in range(500)])
                await wait_until(lambda: min(counts) == JOBS, 0.1)
                elapsed = time.monotonic() - start
                done.set()
    finally:
        for sock in stuck:
            sock.close()
    closed = server.output().count("closing a client that fell behind")
    rss_after = peak_rss_mb(server.pid)
    assert min(counts) == JOBS  # every reading subscriber heard every completion
    if SOAK:  # enough events (megabytes) to fill a stuck client's socket buffers
        assert closed == HALF_OPEN  # each stuck client was closed (4008)
    assert slow_seconds < 15  # the slow header was cut off (open_timeout), not kept
    assert rss_after < 400  # bounded: buffers per client are bounded
    figure(
        subscribers=SUBSCRIBERS,
        half_open=HALF_OPEN,
        jobs=JOBS,
        events_delivered=sum(counts),
        events_per_s=round(sum(counts) / elapsed),
        stuck_closed=closed,
        slow_header_cut_after_s=round(slow_seconds, 1),
        server_peak_rss_mb=round(rss_after, 1),
        server_rss_at_start_mb=round(rss_before, 1),
    )
