"""The long-running commands (demo, serve, worker --serve, watch) and ``jobs --db``, as
real child processes against real files and servers."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from conveyor import JobStatus, QueueNotFound, Runtime
from conveyor.client import Client

from ..conftest import conveyor_command, schema_exists, wait_until
from .test_cli import Work, conveyor

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+)/")


def url_in(line: str) -> str:
    match = URL_LINE.search(line)
    assert match, line
    return match.group(1)


def http_get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def serving(where: str | Path) -> Runtime:
    """A runtime for the commands to talk to: it runs Work and serves on a free port."""
    return Runtime(
        where, queues=[Work()], serve=("127.0.0.1", 0), shutdown_grace=0, poll_interval=0.05
    )


@pytest.fixture
async def rt(db_path: Path) -> AsyncIterator[Runtime]:
    async with serving(db_path) as runtime:
        yield runtime


async def test_demo_streams_varied_jobs_serves_the_dashboard_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.db"
    async with conveyor_command("demo", "--db", str(db), "--port", "0", "--rate", "20") as demo:
        with anyio.fail_after(30):
            page = url_in(await demo.line(lambda line: "dashboard on" in line))
        status, body = await anyio.to_thread.run_sync(http_get, page + "/")
        assert status == 200
        assert b"<title>conveyor" in body

        seen: set[str] = set()
        # The demo enqueues nothing for later: `scheduled` is a retry's wait.
        wanted = {"completed", "failed", "cancelled", "scheduled"}
        async with Client(page.replace("http", "ws")) as client:
            with anyio.fail_after(45):
                async for event in client.events():
                    seen.add(event.status.value)
                    if wanted <= seen:
                        break
        # The terminal shows the same stream (piped here: a line per event).
        await demo.line(lambda line: " cancelled " in line)

        demo.proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        with anyio.fail_after(15):
            assert await demo.exited() == 0, demo.output()
        assert time.monotonic() - started < 10
        assert "stopped" in demo.lines[-1]
        # What a stop does, as it happens: the grace first, then back to the queue.
        assert any("get 1 s to finish, the rest go back" in line for line in demo.lines)
    async with Runtime(db, workers=False) as observer:
        counts = await observer.queue_counts()
    assert set(counts) == {"exports", "image_processing", "training"}
    assert sum(counts["training"].values()) > 0


@pytest.fixture
async def rt_anywhere(location: str) -> AsyncIterator[Runtime]:
    """The runtime of ``rt``, once on a SQLite file and once on a PostgreSQL schema."""
    async with serving(location) as runtime:
        yield runtime


async def test_serve_shows_and_operates_a_database_it_does_not_run(
    rt_anywhere: Runtime, location: str
) -> None:
    rt = rt_anywhere
    done = await rt.enqueue("work", {"n": 1})
    held = await rt.enqueue("work", {"hold": True})
    await rt.wait(done.id, timeout=10)
    async with conveyor_command("serve", "--db", location, "--port", "0") as cmd:
        with anyio.fail_after(30):
            page = url_in(await cmd.line(lambda line: "on http://" in line))
        status, body = await anyio.to_thread.run_sync(http_get, page + "/api/queues")
        assert status == 200
        assert json.loads(body)["queues"]["work"]["completed"] == 1

        async with Client(page.replace("http", "ws")) as client:
            jobs = await client.list_jobs(queue="work")
            assert {j.id for j in jobs} == {done.id, held.id}
            with pytest.raises(QueueNotFound, match="only observes the store"):
                await client.enqueue("work", {"n": 2})

            # Events of a job run by another process reach the observer's subscribers.
            async with anyio.create_task_group() as tg:
                finished = anyio.Event()

                async def follow() -> None:
                    # since=0: replays what came first, so no race with the cancel below.
                    async for event in client.events(job_id=held.id, since=0):
                        if event.status is JobStatus.CANCELLED:
                            finished.set()
                            return

                tg.start_soon(follow)
                with anyio.fail_after(20):
                    cancelling = await client.cancel(held.id)  # crosses into rt's process
                    assert cancelling.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
                    assert (await rt.wait(held.id)).status is JobStatus.CANCELLED
                    await finished.wait()

        cmd.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            assert await cmd.exited() == 0, cmd.output()


async def test_serve_and_jobs_db_refuse_a_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.db")
    for args in (("serve", "--db", missing), ("jobs", "ls", "--db", missing)):
        result = await conveyor(*args)
        assert result.returncode == 2
        assert result.stderr.strip() == f"conveyor: no database at {missing}"
    assert not (tmp_path / "nope.db").exists()


async def test_jobs_db_refuses_a_postgresql_schema_that_does_not_exist(pg_url: str) -> None:
    # As for a missing SQLite file: a typo in the schema must not create an empty one.
    result = await conveyor("jobs", "ls", "--db", pg_url)
    assert result.returncode != 0
    assert "no conveyor tables in schema" in result.stderr
    assert not await schema_exists(pg_url)


async def test_jobs_against_a_database(rt_anywhere: Runtime, location: str) -> None:
    rt = rt_anywhere
    db = ["--db", location]
    bad = await rt.enqueue("work", {"fail": True})
    held = await rt.enqueue("work", {"hold": True})
    await rt.wait(bad.id, timeout=10)

    listed = await conveyor("jobs", "ls", *db, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [held.id, bad.id]
    shown = json.loads((await conveyor("jobs", "show", bad.id, *db, "--json")).stdout)
    assert shown["job"]["error"] == "ValueError: broken row"

    cancelled = await conveyor("jobs", "cancel", held.id, *db, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert (await rt.wait(held.id, timeout=20)).status is JobStatus.CANCELLED
    rerun = json.loads((await conveyor("jobs", "rerun", bad.id, *db, "--json")).stdout)
    assert rerun["status"] == "queued"
    assert (await rt.wait(bad.id, timeout=20)).attempts == 1
    history = await rt.history(bad.id)
    assert any(h.message and "conveyor jobs" in h.message for h in history)
    purged = await conveyor("jobs", "purge", *db, "--all", "--status", "cancelled", "--json")
    assert json.loads(purged.stdout) == {"deleted": 1}


async def test_worker_serves_the_dashboard_of_its_runtime(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(
        "from conveyor import Queue, Runtime\n"
        "class Echo(Queue):\n"
        "    name = 'echo'\n"
        "    async def handle_item(self, item):\n"
        "        return item\n"
        f"runtime = Runtime({str(tmp_path / 'w.db')!r}, queues=[Echo()])\n"
    )
    args = ("worker", "served:runtime", "--port", "0")
    async with conveyor_command(*args, cwd=tmp_path) as worker:
        with anyio.fail_after(30):
            page = url_in(await worker.line(lambda line: "dashboard on" in line))
        async with Client(page.replace("http", "ws")) as client:
            job = await client.enqueue("echo", {"x": 1})
            assert (await client.wait(job.id, timeout=20)).result == {"x": 1}
        worker.proc.send_signal(signal.SIGINT)
        with anyio.fail_after(15):
            assert await worker.exited() == 0, worker.output()


async def test_watch_prints_live_progress(rt: Runtime) -> None:
    async with conveyor_command("watch", rt.server_url, "--queue", "work") as watch:
        with anyio.fail_after(30):
            await wait_until(lambda: rt.bus.has_subscribers)  # watch has subscribed
            job = await rt.enqueue("work", {"n": 7})
            # A transition carries the job's latest progress when the tail reads it: by
            # then this quick job may have reported 1/1 already.
            await watch.line(lambda line: line.startswith(f"{job.id} work running"))
            # Its last progress report (it may arrive merged with the completion).
            await watch.line(lambda line: line == f"{job.id} work completed 1/1 done")
        other = await rt.enqueue("work", {"fail": True})
        with anyio.fail_after(30):
            await watch.line(lambda line: line.startswith(f"{other.id} work failed"))
        watch.proc.send_signal(signal.SIGINT)
        with anyio.fail_after(15):
            assert await watch.exited() == 130


async def test_watch_of_an_unknown_queue_says_so(rt: Runtime) -> None:
    result = await conveyor("watch", rt.server_url, "--queue", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "conveyor: unknown queue 'nope'"


async def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = await conveyor("demo", "--db", str(tmp_path / "d.db"), "--port", port)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("conveyor: ")
    assert "address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_watch_on_a_terminal_draws_bars(rt: Runtime) -> None:
    """Under a real pseudo-terminal, watch draws rich progress bars (not lines)."""
    primary, secondary = pty.openpty()
    proc = await anyio.open_process(
        [sys.executable, "-m", "conveyor.cli", "watch", rt.server_url],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"},
    )
    os.close(secondary)
    screen = b""
    try:
        with anyio.fail_after(30):
            await wait_until(lambda: rt.bus.has_subscribers)
            job = await rt.enqueue("work", {"n": 1})
            tail = job.id[-8:].encode()
            while not (tail in screen and b"completed" in screen and "━".encode() in screen):
                await anyio.wait_readable(primary)
                try:
                    screen += os.read(primary, 65536)
                except OSError:  # the child closed the terminal
                    break
        assert tail in screen
        assert b"\x1b[" in screen  # drawn with terminal escapes, in place
        assert f"{job.id} work completed".encode() not in screen  # not the piped lines
    finally:
        proc.send_signal(signal.SIGINT)
        with anyio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(primary)
