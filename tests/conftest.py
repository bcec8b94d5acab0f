from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

from conveyor import Event, EventStream, JobStatus
from conveyor.store.sqlite import _connections

WORKER_APP = Path(__file__).parent / "worker_app.py"


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite and websockets.asyncio are asyncio-only.
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


POSTGRES_URL = os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A real PostgreSQL database, in a schema of its own (dropped after): the URL to
    give Runtime. Skips when no server answers, unless CONVEYOR_REQUIRE_POSTGRES is set
    (CI sets it: there a missing server is a failure, not a skip)."""
    import asyncpg

    try:
        with anyio.fail_after(5):
            await (await asyncpg.connect(POSTGRES_URL)).close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"no PostgreSQL at {POSTGRES_URL}: {exc}"
        if os.environ.get("CONVEYOR_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    schema = f"test_{secrets.token_hex(6)}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(30):
            # A new connection: a test may have restarted the server meanwhile.
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()


async def schema_exists(url: str) -> bool:
    """Whether the schema a ``?schema=`` URL names exists on its server."""
    import asyncpg

    direct, _, query = url.partition("?")
    schema = dict(parse_qsl(query)).get("schema", "conveyor")
    conn = await asyncpg.connect(direct)
    try:
        return await conn.fetchval("SELECT to_regnamespace($1)", schema) is not None
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def location(
    store_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """Where a store lives, once per kind: a SQLite file (with kind "sqlite-threaded",
    written through conveyor's own threads, as where aiosqlite lacks the private call
    its writers use: see store/sqlite/_connections.py), or a PostgreSQL schema (with
    kind "pgbouncer", reached through a transaction pooler; see the pgbouncer fixture)."""
    if store_kind.startswith("sqlite"):
        if store_kind == "sqlite-threaded":
            monkeypatch.setattr(_connections, "AIOSQLITE_RUNS_FUNCTIONS", False)
        yield str(tmp_path / "jobs.db")
        return
    async with postgres_schema() as url:
        if store_kind == "pgbouncer":
            url = through_pooler(url, pgbouncer_url())
        yield url


PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
_pooler: tuple[subprocess.Popen[bytes], str] | None = None


def pgbouncer_url() -> str:
    """``host:port`` of a PgBouncer in transaction mode in front of POSTGRES_URL's server,
    started once per test session on a free loopback port (and stopped at exit). Skips
    without PgBouncer, unless CONVEYOR_REQUIRE_PGBOUNCER is set (CI sets it)."""
    global _pooler
    if _pooler is not None:
        return _pooler[1]
    if not os.access(PGBOUNCER, os.X_OK):
        message = f"no PgBouncer at {PGBOUNCER} (make pgbouncer installs Debian's)"
        if os.environ.get("CONVEYOR_REQUIRE_PGBOUNCER"):
            pytest.fail(message)
        pytest.skip(message)
    server = urlsplit(POSTGRES_URL)
    home = Path(tempfile.mkdtemp(prefix="conveyor-pgbouncer-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (home / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    (home / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 20\n"
        "log_connections = 0\nlog_disconnections = 0\n"
        f"logfile = {home / 'pgbouncer.log'}\n"
    )
    # PgBouncer refuses to run as root: then it runs as the server's user, which must
    # be able to write its log here.
    as_user = []
    if os.geteuid() == 0:
        as_user = ["-u", "postgres"]
        for path in (home, *home.iterdir()):
            shutil.chown(path, "postgres")
    proc = subprocess.Popen([PGBOUNCER, *as_user, str(home / "pgbouncer.ini")])
    atexit.register(shutil.rmtree, home, ignore_errors=True)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    atexit.register(stop)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            log = home / "pgbouncer.log"
            pytest.fail(f"PgBouncer did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    _pooler = (proc, f"127.0.0.1:{port}")
    return _pooler[1]


def through_pooler(url: str, pooler: str) -> str:
    """``url`` (with its schema) by way of the pooler at ``pooler``, listening directly."""
    direct, _, query = url.partition("?")
    parts = urlsplit(direct)
    user = f"{parts.username}@" if parts.username else ""
    pooled = urlunsplit(parts._replace(netloc=f"{user}{pooler}"))
    return f"{pooled}?{query}&listen_url={quote(direct, safe='')}"


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
    """A real worker process running tests/worker_app.py on a SQLite file or a
    PostgreSQL URL."""

    def __init__(self, db: str, *args: str) -> None:
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
def spawn(location: str) -> Iterator[type[Worker]]:
    """Worker processes on the test's ``location``: once per kind of store."""
    workers: list[Worker] = []

    class Spawner(Worker):
        def __init__(self, *args: str) -> None:
            super().__init__(location, *args)
            workers.append(self)

    yield Spawner
    for w in workers:
        w.kill()
        if w.proc.stdout is not None:
            w.proc.stdout.close()


class Command:
    """``conveyor ARGS`` as a real child process, its output (stdout and stderr, merged)
    read line by line as it comes, so a test can wait for a line with a deadline."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ended = False
        self._changed = anyio.Event()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        pending = ""
        async for chunk in TextReceiveStream(self.proc.stdout, errors="replace"):
            *complete, pending = (pending + chunk).split("\n")
            self.lines.extend(complete)
            self._changed.set()
            self._changed = anyio.Event()
        self.ended = True
        self._changed.set()

    async def line(self, predicate: Callable[[str], bool]) -> str:
        """The first output line that satisfies ``predicate`` (callers bound the wait)."""
        checked = 0
        while True:
            changed = self._changed
            for line in self.lines[checked:]:
                if predicate(line):
                    return line
            checked = len(self.lines)
            if self.ended:
                raise AssertionError("the command ended without it:\n" + self.output())
            await changed.wait()

    def output(self) -> str:
        return "\n".join(self.lines)

    async def exited(self) -> int:
        """The exit code, once the process ended and its output was all read."""
        code = await self.proc.wait()
        while not self.ended:
            await self._changed.wait()
        return code


@contextlib.asynccontextmanager
async def conveyor_command(*args: str, cwd: Path | None = None) -> AsyncIterator[Command]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    async with await anyio.open_process(
        [sys.executable, "-m", "conveyor.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
    ) as proc:
        command = Command(proc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(command._read)
            try:
                yield command
            finally:
                if proc.returncode is None:
                    proc.kill()
                with anyio.move_on_after(10, shield=True):
                    await proc.wait()
