"""The blocking producer: enqueue straight into a queue database, without a server and
without an event loop in the caller."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from .._errors import RuntimeClosed, StoreUnavailable, ValidationError
from .._limits import DEFAULT_LIMITS, Limits, bounded_seconds
from .._models import Job
from .._queue import Queue
from .._runtime import Runtime
from ._closing import Closing

__all__ = ("Producer",)

T = TypeVar("T")

STOP_TIMEOUT = 30.0  # seconds closing may take: the last group commit, the store's close


class _LoopThread:
    """An event loop of its own in a daemon thread, and the portal that runs calls in it.

    Not anyio.from_thread.start_blocking_portal: its thread belongs to a
    ThreadPoolExecutor, which the interpreter joins at exit, so a producer never closed
    would hang the process's exit. This thread is a daemon and a finalizer (run at exit
    too) stops its loop.
    """

    def __init__(self) -> None:
        started = threading.Event()
        box: list[BlockingPortal | BaseException] = []

        async def serve() -> None:
            try:
                async with BlockingPortal() as portal:
                    box.append(portal)
                    started.set()
                    await portal.sleep_until_stopped()
            except BaseException as exc:  # the loop could not start: say so to the caller
                box.append(exc)
                started.set()
                raise

        self.thread = threading.Thread(
            target=anyio.run, args=(serve,), name="conveyor-producer", daemon=True
        )
        self.thread.start()
        started.wait()
        if not isinstance(box[0], BlockingPortal):
            raise box[0]
        self.portal = box[0]

    def stop(self) -> None:
        try:
            self.portal.call(self.portal.stop)
        except RuntimeError:  # stopped already
            pass
        self.thread.join(STOP_TIMEOUT)


def _shut(loop: _LoopThread, runtime: AbstractContextManager[Runtime]) -> None:
    """Leave the runtime (its last commit written, the store closed), then the loop."""
    try:
        runtime.__exit__(None, None, None)
    finally:
        loop.stop()


class Producer(Closing):
    """Enqueues jobs into a queue database from code without an event loop:
    ``Producer("conveyor.db", queues=[ExportQueue()])`` or a ``postgresql://`` URL.
    No server is needed; worker processes on that database (``conveyor worker``) run
    the jobs, and on PostgreSQL they hear of each at once (NOTIFY).

    ``queues``: the queue classes' instances, as the workers define them (their
    handlers are not needed here): an enqueue takes its payload type and defaults from
    them, so the stored job is the one the workers expect.

    How: the producer runs a Runtime without workers (``workers=False``) on an event
    loop of its own, in a daemon thread it owns, and each call hands its coroutine to
    that loop and blocks until it is done. So an enqueue here *is* ``Runtime.enqueue``:
    the same checks (ValidationError naming the field, nothing stored), the same rows
    and history, the same group commit (calls from several threads at once share
    commits), the same NOTIFY; no store code is repeated. It is safe to share between
    threads. Each call waits at most ``call_timeout`` seconds (then StoreUnavailable
    with ``outcome_unknown``: the write may still land).

    Close it (``close()`` or ``with``) to write what is pending and close the database;
    create it in the process that uses it (after a web server forks its workers).
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        queues: Sequence[Queue[Any]],
        *,
        limits: Limits = DEFAULT_LIMITS,
        call_timeout: float = 30.0,
    ) -> None:
        self.call_timeout = bounded_seconds("call_timeout", call_timeout)
        if not isinstance(queues, (list, tuple)):
            raise ValidationError(
                f"queues must be a list of Queue instances, not {type(queues).__name__}"
            )
        self._lock = threading.Lock()
        self._closed = False
        loop = _LoopThread()
        try:
            runtime = loop.portal.call(lambda: Runtime(store, queues, workers=False, limits=limits))
            # Entered and left in one task of the loop, as its task group requires.
            entered = loop.portal.wrap_async_context_manager(runtime)
            self._runtime = entered.__enter__()
        except BaseException:
            loop.stop()
            raise
        self._loop = loop
        self._finalizer = weakref.finalize(self, _shut, loop, entered)

    def close(self) -> None:
        """Write what is pending, close the database and stop the loop thread. Calls
        after it raise RuntimeClosed."""
        with self._lock:
            self._closed = True
        self._finalizer()  # runs _shut once, whoever calls first (this, or the exit)

    def _run(
        self, fn: Callable[..., Awaitable[T]], *args: Any, bounded: bool = True, **kwargs: Any
    ) -> T:
        """``await fn(*args, **kwargs)`` on the loop thread, blocking until it is done
        (``bounded``: for at most call_timeout seconds)."""
        with self._lock:
            if self._closed:
                raise RuntimeClosed("this producer was closed")
            future = self._loop.portal.start_task_soon(lambda: fn(*args, **kwargs))
        try:
            return future.result(self.call_timeout if bounded else None)
        except FutureTimeout:
            future.cancel()
            raise StoreUnavailable(
                f"the store did not answer within {self.call_timeout}s (call_timeout);"
                " what was asked may still be written",
                outcome_unknown=True,
            ) from None
        except CancelledError:
            raise RuntimeClosed("the producer was closed during the call") from None

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> Job:
        """``Runtime.enqueue``, blocking: the job, once it is durable."""
        return self._run(
            self._runtime.enqueue,
            queue,
            payload,
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
            unique_key=unique_key,
            meta=meta,
            tags=tags,
        )

    def enqueue_many(
        self,
        queue: str,
        payloads: Iterable[Any],
        *,
        created_by: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        meta: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> list[Job]:
        """``Runtime.enqueue_many``, blocking: all the jobs in one commit, or none
        (every job with the same meta and tags)."""
        return self._run(
            self._runtime.enqueue_many,
            queue,
            payloads,
            created_by=created_by,
            priority=priority,
            delay=delay,
            at=at,
            max_attempts=max_attempts,
            timeout=timeout,
            meta=meta,
            tags=tags,
        )

    def job(self, job_id: str) -> Job:
        """The current record of a job of any queue. JobNotFound if there is none."""
        return self._run(self._runtime.job, job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """``Runtime.wait``, blocking: the job once it is terminal (the workers in other
        processes finished it); WaitTimeout after ``timeout`` seconds. The wait itself
        is bounded by ``timeout``, not by call_timeout."""
        return self._run(self._runtime.wait, job_id, timeout, bounded=False)
