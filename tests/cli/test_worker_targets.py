"""What ``conveyor worker MODULE:ATTR`` accepts besides a Runtime: an async factory, an
async context manager (function or object), a list of queues on --db; and how it
refuses the rest. Each runs as a real worker process on a real SQLite file."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime

from ..conftest import wait_until
from .test_cli import conveyor, start

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

APP = """
import contextlib
from conveyor import Queue, Runtime

DB = {db!r}
TRAIL = {trail!r}

def note(line):
    with open(TRAIL, "a") as f:
        f.write(line + "\\n")

class Greet(Queue):
    name = "greet"

    def __init__(self, client=None):
        self.client = client

    async def on_startup(self):
        note("queue startup")

    async def on_shutdown(self):
        note("queue shutdown")

    async def handle_item(self, item):
        return f"hello {{item['name']}} via {{self.client}}"

async def make_runtime():
    return Runtime(DB, queues=[Greet("factory")])

@contextlib.asynccontextmanager
async def with_client():
    note("client opened")
    yield Runtime(DB, queues=[Greet("shared client")])
    note("client closed")

class Lifespan:
    async def __aenter__(self):
        self.manager = with_client()
        return await self.manager.__aenter__()

    async def __aexit__(self, *exc):
        return await self.manager.__aexit__(*exc)

lifespan = Lifespan()

@contextlib.asynccontextmanager
async def running():
    async with Runtime(DB, queues=[Greet("running")]) as rt:
        note("started by the app")
        yield rt

QUEUES = [Greet("list")]

def not_a_runtime():
    return 42

class Broken(Queue):
    name = "broken"

    async def on_startup(self):
        raise ConnectionError("pool refused")

    async def handle_item(self, item):
        return None

def broken():
    return Runtime(DB, queues=[Broken()])
"""


class Greet(Queue):
    name = "greet"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(
        APP.format(db=str(tmp_path / "app.db"), trail=str(tmp_path / "trail.txt"))
    )
    return tmp_path


async def run_worker(app: Path, target: str, *args: str) -> tuple[Any, str, list[str]]:
    """Start ``conveyor worker target``, run a job through it, stop it with SIGTERM:
    the job's result, the worker's output, and the trail the app wrote."""
    proc = start("worker", target, *args, cwd=app)
    try:
        async with Runtime(app / "app.db", queues=[Greet()], workers=False) as client:
            job = await client.enqueue("greet", {"name": "ada"})
            with anyio.fail_after(30):
                done = await client.wait(job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await wait_until(lambda: proc.poll() is not None, 0.05)
        output = proc.stdout.read() if proc.stdout else ""
        errors = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 0, errors
        assert "conveyor worker: stopped" in output
        trail = app / "trail.txt"
        return done.result, output, trail.read_text().splitlines() if trail.exists() else []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


async def test_an_async_factory(app: Path) -> None:
    result, _, trail = await run_worker(app, "myapp:make_runtime")
    assert result == "hello ada via factory"
    assert trail == ["queue startup", "queue shutdown"]


async def test_an_async_context_manager_is_entered_before_and_left_after(app: Path) -> None:
    result, _, trail = await run_worker(app, "myapp:with_client")
    assert result == "hello ada via shared client"
    assert trail == ["client opened", "queue startup", "queue shutdown", "client closed"]


async def test_an_async_context_manager_object(app: Path) -> None:
    result, _, trail = await run_worker(app, "myapp:lifespan")
    assert result == "hello ada via shared client"
    assert trail == ["client opened", "queue startup", "queue shutdown", "client closed"]


async def test_a_runtime_the_context_manager_started_itself(app: Path) -> None:
    result, output, trail = await run_worker(app, "myapp:running")
    assert result == "hello ada via running"
    assert trail == ["queue startup", "started by the app", "queue shutdown"]
    assert "running greet" in output


async def test_a_list_of_queues_runs_on_db(app: Path) -> None:
    result, _, _ = await run_worker(app, "myapp:QUEUES", "--db", str(app / "app.db"))
    assert result == "hello ada via list"


async def test_what_is_refused_says_what_was_given(app: Path) -> None:
    wrong = await conveyor("worker", "myapp:not_a_runtime", cwd=app)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == (
        "conveyor: myapp:not_a_runtime returned int, not a Runtime or a list of queues,"
        " a function or async function returning one, or an async context manager"
        " yielding one"
    )
    queue_class = await conveyor("worker", "myapp:Greet", cwd=app)
    assert queue_class.returncode == 2
    assert "myapp:Greet returned Greet, not a Runtime" in queue_class.stderr
    served = await conveyor("worker", "myapp:running", "--port", "0", cwd=app)
    assert served.returncode == 2
    assert "yielded a Runtime already running: --port needs one to start" in served.stderr
    failed = await conveyor("worker", "myapp:broken", cwd=app)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "conveyor: queue 'broken': on_startup() failed: ConnectionError: pool refused"
    )
    for result in (wrong, queue_class, served, failed):
        assert "Traceback" not in result.stderr
