from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from conveyor import Event, EventStream, JobStatus

WORKER_APP = Path(__file__).parent / "worker_app.py"


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite and websockets.asyncio are asyncio-only.
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


async def next_event(
    stream: EventStream, *, job_id: str | None = None, status: JobStatus | None = None
) -> Event:
    """The next event of the stream matching job_id/status (callers bound the wait)."""
    async for event in stream:
        if (job_id is None or event.job_id == job_id) and (
            status is None or event.status == status
        ):
            return event
    raise AssertionError("event stream ended")


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], interval: float = 0.01
) -> None:
    """Re-check ``condition`` until it holds (callers bound the wait with fail_after).

    Only for state that sends no signal to wait on: rows another process writes, a
    coalesced store write, a child process's exit. Everything else waits on events.
    """
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await anyio.sleep(interval)


class Worker:
    """A real worker process running tests/worker_app.py on a database file."""

    def __init__(self, db: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER_APP), str(db), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def exited(self) -> int:
        await wait_until(lambda: self.proc.poll() is not None, 0.02)
        return self.proc.returncode

    def output(self) -> str:
        if self.proc.stdout is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def spawn(db_path: Path) -> Iterator[type[Worker]]:
    workers: list[Worker] = []

    class Spawner(Worker):
        def __init__(self, *args: str) -> None:
            super().__init__(db_path, *args)
            workers.append(self)

    yield Spawner
    for w in workers:
        w.kill()
        if w.proc.stdout is not None:
            w.proc.stdout.close()
