"""conveyor.client against a real server: calls, typed errors, and events that survive a
server restart without losing or repeating a transition."""

from __future__ import annotations

import inspect
import json
import math
import os
import socket
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets

from conveyor import (
    InvalidTransition,
    JobNotFound,
    JobStatus,
    Queue,
    QueueNotFound,
    Runtime,
    ValidationError,
    WaitTimeout,
)
from conveyor.client import Client, ServerError

pytestmark = pytest.mark.anyio


class Square(Queue):
    name = "square"
    worker_count = 2

    async def handle_item(self, item: dict[str, int]) -> int:
        if item.get("n", 0) < 0:
            raise ValueError("negative")
        self.report_progress(current=1, total=1)
        return item["n"] ** 2


class Hold(Queue):
    name = "hold"

    async def handle_item(self, item: Any) -> None:
        await anyio.sleep_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_calls_round_trip(db_path: Path) -> None:
    async with (
        Runtime(db_path, queues=[Square(), Hold()], serve=("127.0.0.1", 0), shutdown_grace=0) as rt,
        Client(rt.server_url) as client,
    ):
        job = await client.enqueue("square", {"n": 7}, created_by="client")
        assert job.status is JobStatus.QUEUED
        done = await client.wait(job.id, timeout=10)
        assert (done.status, done.result, done.created_by) == (JobStatus.COMPLETED, 49, "client")
        assert (await client.job(job.id)).result == 49
        history = await client.history(job.id)
        assert [h.status for h in history] == [
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
        ]
        bad = await client.enqueue("square", {"n": -1})
        failed = await client.wait(bad.id, timeout=10)
        assert failed.status is JobStatus.FAILED
        assert (await client.rerun(bad.id, by="me")).status is JobStatus.QUEUED
        held = await client.enqueue("hold", {})
        assert (await client.cancel(held.id)).status in (JobStatus.CANCELLED, JobStatus.CANCELLING)
        assert (await client.wait(held.id, timeout=10)).status is JobStatus.CANCELLED
        listed = await client.list_jobs(queue="square", limit=10)
        assert {j.id for j in listed} == {job.id, bad.id}
        once = await client.enqueue("hold", {}, unique_key="k")
        assert (await client.enqueue("hold", {"other": 1}, unique_key="k")).id == once.id
        await client.wait(bad.id, timeout=10)
        counts = await client.queue_counts()
        assert set(counts) == {"square", "hold"}
        assert counts["square"][JobStatus.FAILED] == 1
        assert counts["hold"][JobStatus.CANCELLED] == 1
        assert await client.purge(statuses=["completed"], queue="square") == 1  # the 49
        with pytest.raises(WaitTimeout):
            await client.wait((await client.enqueue("hold", {})).id, timeout=0.2)
        paused = await client.pause("square", by="ops")
        assert (paused.name, paused.paused, paused.paused_by) == ("square", True, "ops")
        waiting = await client.enqueue("square", {"n": 3})
        states = {s.name: s for s in await client.queue_states()}
        assert states["square"].paused
        assert states["square"].paused_at == paused.paused_at
        assert not states["hold"].paused
        assert (await client.resume("square")).paused is False
        assert (await client.wait(waiting.id, timeout=10)).result == 9
        [me] = await client.workers()  # the served runtime, which runs workers
        assert (me.pid, me.queues, me.lost) == (os.getpid(), {"square": 2, "hold": 1}, False)
        assert me.id == (await rt.workers())[0].id
        url = rt.server_url.replace("ws://", "http://") + "/api/workers"
        body = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read())
        assert [w["id"] for w in json.loads(body)["workers"]] == [me.id]
        held = [await client.enqueue("hold", {}, created_by="batch") for _ in range(3)]
        assert await client.cancel_matching(queue="hold", created_by="batch") == 3
        assert await client.rerun_matching(queue="hold", statuses=["cancelled"], by="me") >= 3
        assert (await client.history(held[0].id))[-1].message == "rerun by me"


async def test_the_client_and_the_runtime_name_and_shape_operations_alike(db_path: Path) -> None:
    # Each operation the two share has one name and one signature: a caller can switch
    # from the in-process runtime to the client by changing what it holds.
    shared = ("enqueue", "job", "job_status", "cancel", "request_job_cancel", "list_jobs")
    shared += ("history", "rerun", "purge", "wait", "queue_counts")
    shared += ("queue_states", "pause", "resume", "cancel_matching", "rerun_matching")
    shared += ("workers",)
    for op in shared:
        runtime_params = inspect.signature(getattr(Runtime, op)).parameters
        client_params = inspect.signature(getattr(Client, op)).parameters
        in_process_only = {"connection"}  # an application's transaction, on the Runtime
        assert list(client_params) == [p for p in runtime_params if p not in in_process_only], op
    async with (
        Runtime(db_path, queues=[Square(), Hold()], serve=("127.0.0.1", 0), shutdown_grace=0) as rt,
        Client(rt.server_url) as client,
    ):
        for caller in (rt, client):
            job = await caller.enqueue("hold", {}, delay=timedelta(hours=1), priority=3)
            assert (job.status, job.priority) == (JobStatus.SCHEDULED, 3)
            assert job.scheduled_at is not None
            assert (await caller.job_status("hold", job.id)).id == job.id
            with pytest.raises(JobNotFound):
                await caller.job_status("square", job.id)  # a job, but not of that queue
            with pytest.raises(JobNotFound):
                await caller.request_job_cancel("square", job.id)
            assert (await caller.job(job.id)).status is JobStatus.SCHEDULED
            assert (await caller.request_job_cancel("hold", job.id)).status is JobStatus.CANCELLED
            other = await caller.enqueue("hold", {})
            assert (await caller.cancel(other.id)).status in (
                JobStatus.CANCELLED,
                JobStatus.CANCELLING,
            )
            assert (await caller.wait(other.id, timeout=10)).status is JobStatus.CANCELLED
            assert await caller.purge(older_than=timedelta(0), statuses=["cancelled"]) == 2


async def test_the_wire_takes_a_delay_as_an_iso_8601_duration(db_path: Path) -> None:
    async with (
        Runtime(db_path, queues=[Hold()], serve=("127.0.0.1", 0), workers=False) as rt,
        websockets.connect(rt.server_url) as ws,
    ):
        await ws.send('{"id": 1, "op": "enqueue", "queue": "hold", "payload": 1, "delay": "PT1H"}')
        reply = json.loads(await ws.recv())
        assert reply["type"] == "result", reply
        job = await rt.job(reply["value"]["id"])
        assert job.scheduled_at is not None
        ahead = (job.scheduled_at - job.created_at).total_seconds()
        assert ahead == pytest.approx(3600, abs=1)


async def test_what_the_runtime_refuses_the_client_refuses_alike(db_path: Path) -> None:
    async with (
        Runtime(db_path, queues=[Square()], serve=("127.0.0.1", 0), workers=False) as rt,
        Client(rt.server_url) as client,
    ):
        job = await client.enqueue("square", {"n": 1})
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("enqueue", ("square", {"x": math.nan}), {}),
            ("enqueue", ("square", {"a": object()}), {}),
            ("enqueue", ("square", {"a": "\ud800"}), {}),
            ("enqueue", ("square", {}), {"delay": math.inf}),
            ("enqueue", ("square", {}), {"timeout": math.nan}),
            ("enqueue", ("square", {}), {"delay": "PT60S"}),
            ("enqueue", ("square", {}), {"priority": "high"}),
            ("enqueue", (123, {}), {}),
            ("job", (123,), {}),
            ("job_status", ("square", ""), {}),
            ("history", (None,), {}),
            ("rerun", (job.id,), {"by": 5}),
            ("pause", ("square",), {"by": 5}),
            ("cancel_matching", (), {"statuses": ["bogus"]}),
            ("cancel_matching", (), {"older_than": -1}),
            ("rerun_matching", (), {"created_by": 3}),
            ("pause", ("",), {}),
            ("resume", (None,), {}),
            ("wait", (job.id,), {"timeout": "abc"}),
            ("wait", (job.id,), {"timeout": math.nan}),
            ("wait", (job.id,), {"timeout": -1}),
            ("list_jobs", (), {"status": "bogus"}),
            ("list_jobs", (), {"limit": "abc"}),
        ]
        for op, args, kwargs in calls:
            for caller in (rt, client):
                with pytest.raises(ValidationError):
                    await getattr(caller, op)(*args, **kwargs)
        assert [j.id for j in await rt.list_jobs()] == [job.id]  # nothing else stored


async def test_errors_are_typed(db_path: Path) -> None:
    async with (
        Runtime(db_path, queues=[Square()], serve=("127.0.0.1", 0), workers=False) as rt,
        Client(rt.server_url) as client,
    ):
        with pytest.raises(QueueNotFound, match="nope"):
            await client.enqueue("nope", {})
        with pytest.raises(JobNotFound, match="missing"):
            await client.job("missing")
        with pytest.raises(ValidationError, match="limit"):
            await client.list_jobs(limit=0)
        job = await client.enqueue("square", {"n": 1})
        with pytest.raises(InvalidTransition):
            await client.rerun(job.id)


async def test_a_wrong_token_is_refused(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Square()], serve=("127.0.0.1", 0), token="t") as rt:
        with pytest.raises(ServerError, match="http_401"):
            async with Client(rt.server_url, token="wrong"):
                pass
        async with Client(rt.server_url, token="t") as client:
            assert await client.list_jobs() == []


async def test_events_resume_across_a_server_restart(db_path: Path) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"

    async def serve(stop: anyio.Event, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with Runtime(db_path, queues=[Square()], serve=("127.0.0.1", port)):
            task_status.started()
            await stop.wait()

    seen: list[tuple[int, str, JobStatus]] = []
    ids: list[str] = []
    first_done = anyio.Event()
    all_done = anyio.Event()

    async def watch(client: Client) -> None:
        # since=0: from the first transition, so the first job's "queued" is not lost to
        # the race between this subscription and the enqueue right after it.
        events = client.events(queue="square", statuses=["queued", "completed"], since=0)
        async for event in events:
            seen.append((event.seq, event.job_id, event.status))
            done = {j for _, j, s in seen if s is JobStatus.COMPLETED}
            if ids and ids[0] in done:
                first_done.set()
            if len(ids) == 4 and done >= set(ids):
                all_done.set()
                await events.aclose()
                return

    async with anyio.create_task_group() as tg:
        first_server = anyio.Event()
        await tg.start(serve, first_server)
        async with Client(url) as client:
            tg.start_soon(watch, client)
            ids.append((await client.enqueue("square", {"n": 1})).id)
            with anyio.fail_after(10):
                await first_done.wait()
            # The server goes away; jobs are enqueued and run while it is down.
            first_server.set()
            async with Runtime(db_path, queues=[Square()]) as offline:
                ids.extend([(await offline.enqueue("square", {"n": n})).id for n in (2, 3, 4)])
                for job_id in ids[1:]:
                    await offline.wait(job_id, timeout=10)
            # It comes back on the same port: the stream reconnects and catches up, and
            # the request connection re-opens on the next call.
            second_server = anyio.Event()
            await tg.start(serve, second_server)
            with anyio.fail_after(20):
                await all_done.wait()
            assert (await client.job(ids[-1])).result == 16
        second_server.set()
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)  # nothing twice
    for job_id in ids:  # nothing lost
        assert [s for _, j, s in seen if j == job_id] == [JobStatus.QUEUED, JobStatus.COMPLETED]


async def test_leaving_the_client_while_a_timeout_cancels_its_events(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Square()], serve=("127.0.0.1", 0)) as rt:
        with anyio.move_on_after(0.3) as scope:
            async with Client(rt.server_url) as client:
                await client.enqueue("square", {"n": 2})
                async for _ in client.events():
                    pass
        assert scope.cancelled_caught  # and no "cancel scope isn't current" RuntimeError


async def test_clients_that_vanish_mid_stream_are_not_errors(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from websockets.asyncio.client import connect

    async with Runtime(db_path, queues=[Square()], serve=("127.0.0.1", 0)) as rt:
        await rt.enqueue_many("square", [{"n": i} for i in range(500)])
        for _ in range(5):
            ws = await connect(rt.server_url)
            # A replay of every event so far: the server is still sending when we go.
            await ws.send('{"id": 1, "op": "subscribe", "since": 0}')
            await ws.recv()
            await rt.enqueue_many("square", [{"n": i} for i in range(100)])
            ws.transport.abort()  # gone without a closing handshake, mid-stream
        with anyio.fail_after(20):
            await rt.drain()
        async with Client(rt.server_url) as client:  # still serving
            assert len(await client.list_jobs(limit=1000)) == 1000
    errors = [r for r in caplog.records if r.levelno >= 40 or r.exc_info]
    assert errors == []
