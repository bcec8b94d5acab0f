"""Fixtures of the sync tests: a real server process and real worker processes on the
test's store (a SQLite file, or a PostgreSQL schema), driven from plain threads."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from anyio.from_thread import start_blocking_portal

from ..conftest import WORKER_APP, postgres_schema

SERVER_APP = Path(__file__).parent / "server_app.py"

T = TypeVar("T")


def in_threads(count: int, work: Callable[[int], list[T]]) -> list[list[T]]:
    """``work(n)`` for n in range(count), each in a plain thread of its own, all let go
    at once: what each returned (the first error any raised is raised here)."""
    results: list[list[T]] = [[] for _ in range(count)]
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(10)
            results[n] = work(n)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    assert not any(thread.is_alive() for thread in pool), "a thread is stuck"
    if errors:
        raise errors[0]
    return results


class Process:
    """A child process whose output lines are read as they come (by a thread), so a
    test can wait for one with a deadline."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no such line in time:\n" + "\n".join(self.seen)) from None
            self.seen.append(line)
            if predicate(line):
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)  # the pipe's end reached
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def location(store_kind: str, tmp_path: Path) -> Iterator[str]:
    """tests/conftest.py's ``location`` for tests without an event loop: a SQLite file,
    or a PostgreSQL schema of the test's own (made and dropped on a portal's loop)."""
    if store_kind == "sqlite":
        yield str(tmp_path / "jobs.db")
        return
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(postgres_schema()) as url,
    ):
        yield url


class Server(Process):
    """server_app.py on a store: ``url`` once it serves."""

    def __init__(self, location: str, token: str | None = None) -> None:
        super().__init__(str(SERVER_APP), location, *([token] if token else []))
        self.url = self.line(lambda line: line.startswith("url ")).split()[1]


@pytest.fixture
def server(location: str) -> Iterator[str]:
    """The websocket URL of a real server process on the test's store."""
    process = Server(location)
    yield process.url
    process.stop()


@pytest.fixture
def worker(location: str) -> Iterator[Process]:
    """A real worker process (tests/worker_app.py) on the test's store, ready."""
    process = Process(str(WORKER_APP), location)
    process.line(lambda line: line == "ready", timeout=60)
    yield process
    process.stop()
