"""Runtime: the object an application holds. It owns one task group and wires the store,
the engine and the event bus together."""

from __future__ import annotations

import inspect
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from ._bus import EventBus
from ._clock import Clock, SystemClock
from ._errors import ConveyorError, RuntimeClosed, ValidationError
from ._limits import DEFAULT_LIMITS, Limits, seconds, shown
from ._logging import get_logger
from ._options import check_queue_class
from ._queue import Queue
from ._queue_control import QueueControl
from ._spec import QueueSpec
from ._states import JobStatus
from ._stats import RunStats, RuntimeStats
from .engine import Engine
from .store import Store, store_at

if TYPE_CHECKING:
    from .server import Server

log = get_logger("conveyor")


class Runtime(QueueControl):
    """Durable queues with bounded concurrency, in this process.

    ``async with Runtime("conveyor.db", queues=[ExportQueue()]) as rt:`` opens (or
    creates) the SQLite file, starts a worker pool per queue and returns once they run.
    A ``postgresql://`` URL instead uses that database (the ``postgres`` extra), where
    worker processes on many machines share the queues; a Store object, that store.
    Leaving the block stops claiming, gives running jobs ``shutdown_grace`` seconds to
    finish, then cancels the rest and puts them back to ``queued`` for the next start.

    ``workers=False`` makes a runtime that only enqueues and reads (the queues are still
    given, for their names and payload types) while other processes run the jobs. With
    no queues as well it observes every queue in the store: it lists, watches, cancels,
    reruns and purges any job, but cannot enqueue (it knows no payload types). This is
    what ``conveyor serve --db`` runs.

    Tuning: ``lease_ttl`` is how long a crashed worker's jobs stay claimed before another
    worker takes them back (live workers renew their leases every third of it);
    ``poll_interval`` bounds how late this runtime notices what other processes did
    on SQLite (PostgreSQL notifies at once);
    ``progress_interval`` is how often progress reports are written to the store (they
    are broadcast at once regardless). ``limits`` bounds the sizes of what enters (see
    :class:`Limits` for the table and the defaults).

    Retention: a worker runtime deletes completed and cancelled jobs ``retain_completed``
    after they finished (default 7 days) and failed ones after ``retain_failed`` (30
    days), history included; ``purge()`` does it on demand.

    ``serve=("127.0.0.1", 8765)`` also starts the websocket server (port 0: any free
    port; see ``server_url``). Any address other than loopback requires ``token=``;
    ``allowed_origins`` lists the browser origins allowed besides the page's own;
    a websocket message over ``max_message_bytes`` gets a ``too_large`` error reply.

    Metrics: the runtime counts its runs per queue (started, completed, failed, retried,
    cancelled, rescued; durations and queue waits) in plain integers, which
    ``GET /metrics`` on its server and ``conveyor.metrics.render`` export for Prometheus
    (the ``metrics`` extra); ``metrics=False`` skips the counting (see docs/metrics.md).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store = "conveyor.db",
        queues: Sequence[Queue[Any]] = (),
        *,
        workers: bool = True,
        shutdown_grace: float = 10.0,
        lease_ttl: float = 30.0,
        poll_interval: float = 0.1,
        progress_interval: float = 0.25,
        limits: Limits = DEFAULT_LIMITS,
        clock: Clock | None = None,
        serve: tuple[str, int] | None = None,
        token: str | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_message_bytes: int = 1 << 20,
        retain_completed: float | timedelta = timedelta(days=7),
        retain_failed: float | timedelta = timedelta(days=30),
        metrics: bool = True,
    ) -> None:
        opened: Store = store_at(store) if isinstance(store, (str, os.PathLike)) else store
        if not isinstance(limits, Limits):
            raise ValidationError(f"limits must be a conveyor.Limits, not {type(limits).__name__}")
        self.queues: dict[str, Queue[Any]] = {}
        specs: dict[str, QueueSpec] = {}  # each queue's settings, resolved once
        for queue in queues:
            spec = check_queue_class(queue, workers, limits)
            if spec.name in specs:
                raise ValidationError(f"two queues are named {spec.name!r}")
            self.queues[spec.name] = queue
            specs[spec.name] = spec
        for name, value in (
            ("shutdown_grace", shutdown_grace),
            ("lease_ttl", lease_ttl),
            ("poll_interval", poll_interval),
            ("progress_interval", progress_interval),
        ):
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValidationError(f"{name} must be a number >= 0, not {shown(value)}")
        if lease_ttl <= 0 or poll_interval <= 0:
            raise ValidationError("lease_ttl and poll_interval must be > 0")
        if not isinstance(metrics, bool):
            raise ValidationError(f"metrics must be True or False, not {shown(metrics)}")
        self._stack: AsyncExitStack | None = None
        self._server: Server | None = None
        if serve is not None:
            self.attach_server(
                *serve,
                token=token,
                allowed_origins=allowed_origins,
                max_message_bytes=max_message_bytes,
            )
        self.shutdown_grace = float(shutdown_grace)
        clock = clock or SystemClock()
        bus = EventBus()
        runs = RunStats() if metrics else None
        self.stats = RuntimeStats(runs, opened.errors)
        """What conveyor.metrics exports of this runtime (see RuntimeStats)."""
        engine = Engine(
            opened,
            bus,
            clock,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
            progress_interval=progress_interval,
            retention={
                JobStatus.COMPLETED: seconds("retain_completed", retain_completed),
                JobStatus.CANCELLED: seconds("retain_completed", retain_completed),
                JobStatus.FAILED: seconds("retain_failed", retain_failed),
            },
            limits=limits,
            runs=runs,
        )
        super().__init__(
            store=opened,
            engine=engine,
            bus=bus,
            clock=clock,
            specs=specs,
            workers=workers,
            limits=limits,
        )
        self._tg: TaskGroup | None = None
        self._force = anyio.Event()

    def attach_server(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        """What ``serve=`` does, for a runtime already built (``conveyor worker --serve``
        serves the app's runtime). Call it before ``async with``."""
        from .server import Server, is_loopback

        if self._stack is not None:
            raise RuntimeClosed("attach_server() must come before the runtime starts")
        if self._server is not None:
            raise ValidationError("this runtime already serves on " + self._server.url)
        if not is_loopback(host) and not token:
            raise ValidationError(f"serving on {host!r}, beyond this machine, requires a token=")
        self._server = Server(
            self,
            host,
            port,
            token=token,
            allowed_origins=allowed_origins,
            max_message_bytes=max_message_bytes,
        )

    @property
    def server_url(self) -> str:
        """``ws://host:port`` of the websocket server (started with ``serve=``)."""
        if self._server is None:
            raise RuntimeClosed("this runtime serves nothing: pass serve=(host, port)")
        return self._server.url

    # -- life cycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeClosed("a Runtime can be entered only once")
        stack = self._stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self.store.open(self._engine.owner)
            stack.push_async_callback(self.store.close)
            self._tg = tg = await stack.enter_async_context(anyio.create_task_group())
            await tg.start(
                self._engine.run, list(self.specs.values()) if self.runs_workers else None
            )
            if self._server is not None:
                await tg.start(self._server.run)
        except BaseException as exc:
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                # The task group wraps what failed to start (a port in use): raise that
                # alone, as a plain OSError or ConveyorError a caller can catch.
                if group.exceptions != (exc,):
                    raise
            error: BaseException = exc
            while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            if isinstance(error, ConveyorError) and error is not exc:
                # The engine's task group wrapped it alone (a queue's on_startup failed).
                raise error from error.__cause__
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._stack is None or self._tg is None:
            raise RuntimeClosed("the runtime was not entered")
        self._open = False
        try:
            forced = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
            await self._engine.stop(self.shutdown_grace, self._force, force=forced)
        finally:
            self._tg.cancel_scope.cancel()
            await self._stack.__aexit__(exc_type, exc, tb)
        return None

    def _task_group(self) -> TaskGroup:
        self._require_open()
        assert self._tg is not None  # open means entered
        return self._tg

    async def run_until_signalled(
        self, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Serve until SIGINT or SIGTERM, then return, so leaving ``async with`` stops
        gracefully. A second signal during that stop cancels running jobs at once."""
        tg = self._task_group()
        first = anyio.Event()

        async def watch(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            # Keeps the handlers installed through the shutdown, for the second signal.
            with anyio.open_signal_receiver(*signals) as received:
                task_status.started()
                count = 0
                async for signum in received:
                    count += 1
                    log.info("received %s (%d)", signal.Signals(signum).name, count)
                    first.set()
                    if count >= 2:
                        self._force.set()
                        return

        await tg.start(watch)
        await first.wait()

    def defer(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` soon, fire-and-forget: not stored, not bounded, no
        retry. A plain function runs in a worker thread. Errors are logged. Use a queue
        for anything that must not be lost."""
        tg = self._task_group()

        async def run() -> None:
            try:
                if inspect.iscoroutinefunction(fn):
                    await fn(*args, **kwargs)
                else:
                    await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
            except Exception:
                log.exception("deferred call %r failed", getattr(fn, "__qualname__", fn))

        tg.start_soon(run)
