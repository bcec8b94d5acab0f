"""Helpers for testing code that uses conveyor.

A runtime on a fresh temporary SQLite file, tuned for tests (no shutdown grace, fast
polling), which your test fixtures can yield::

    import pytest
    from conveyor import testing

    @pytest.fixture
    async def rt():
        async with testing.runtime([ExportQueue()]) as rt:
            yield rt

    @pytest.mark.anyio
    async def test_export(rt):
        job = await rt.enqueue("exports", {"query": "q"})
        await rt.drain()                       # until no job is runnable
        assert (await rt.job_status("exports", job.id)).status == "completed"
        await rt.assert_enqueued("exports", payload={"query": "q"}, count=1)

Everything is real: the same engine and store as in production, on a throwaway file.
Time can be moved instead of waited for: pass ``clock=ManualClock()`` and call
``clock.advance(seconds)`` (delays, periodic ticks, leases and retention follow it), or
``drain(run_scheduled=True)``, which moves it for you. ``inline=True`` makes each
enqueue return once its job ran. The pytest plugin (conveyor.pytest_plugin, loaded by
pytest on its own) wraps all this in fixtures: see docs/howto-testing.md.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from ._clock import ManualClock
from ._context import _current
from ._errors import EventStreamOverflow, ValidationError
from ._limits import MAX_LIST_LIMIT, integer, name
from ._models import EnqueueOptions, Job
from ._operations import JobOperations
from ._queue import Queue
from ._runtime import Runtime
from ._waiting import BUSY

__all__ = ("ManualClock", "TestRuntime", "assert_enqueued", "enqueued", "runtime")


class TestRuntime(Runtime):
    """A Runtime with test helpers: what :func:`runtime` and the pytest plugin's
    ``conveyor_runtime`` fixture give. ``inline=True``: see :func:`runtime`."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    def __init__(self, *args: Any, inline: bool = False, **options: Any) -> None:
        if not isinstance(inline, bool):
            raise ValidationError(f"inline must be True or False, not {inline!r}")
        super().__init__(*args, **options)
        if inline and not self.runs_workers:
            raise ValidationError("inline=True runs jobs in this runtime: it needs workers")
        self.inline = inline

    async def submit(
        self,
        queue: str,
        payloads: Iterable[Any],
        options: EnqueueOptions,
        *,
        connection: object | None = None,
    ) -> list[Job]:
        """As Runtime's; inline, it returns the jobs once their runs ended (see
        :func:`runtime`), re-read from the store."""
        if not self.inline or connection is not None or _current.get() is not None:
            # In the application's transaction the jobs exist only once it commits; inside
            # a handler an inline wait could need the very worker slot the handler holds:
            # those jobs run as usual (drain() waits for them).
            return await super().submit(queue, payloads, options, connection=connection)
        async with self.bus.subscribe(queue=queue, max_buffer=64) as changes:
            jobs = await super().submit(queue, payloads, options, connection=connection)
            pending = {job.id for job in jobs if job.status in BUSY}
            while pending:
                for job_id in list(pending):
                    job = await self.store.reads.job_get(job_id)
                    if job is None or job.status not in BUSY:
                        pending.discard(job_id)
                if pending:
                    with contextlib.suppress(EventStreamOverflow, StopAsyncIteration):
                        await changes.__anext__()
        return [await self._get(job.id) for job in jobs]

    async def enqueued(self, queue: str, payload: Any = None) -> list[Job]:
        """See :func:`enqueued`."""
        return await enqueued(self, queue, payload)

    async def assert_enqueued(
        self, queue: str, *, payload: Any = None, count: int | None = None
    ) -> list[Job]:
        """See :func:`assert_enqueued`."""
        return await assert_enqueued(self, queue, payload=payload, count=count)


@asynccontextmanager
async def runtime(
    queues: Sequence[Queue[Any]],
    *,
    inline: bool = False,
    db: str | Path | None = None,
    **options: Any,
) -> AsyncIterator[TestRuntime]:
    """A running TestRuntime for ``queues`` on a temporary database, removed afterwards
    (``db``: that SQLite file instead, left to the caller).

    ``options`` go to Runtime (for example ``serve=("127.0.0.1", 0)``); by default the
    runtime stops without a grace period and polls other processes every 10 ms.

    ``inline=True``: ``enqueue`` (and ``enqueue_many``) return once the jobs' runs ended,
    as the store has them then: ``completed`` with the result, ``failed`` with the error
    (a handler's exception is recorded in its job, as in production, not raised), or
    ``scheduled`` for a retry. The jobs still go through the store and the real workers.
    Jobs enqueued with a ``delay`` wait ``scheduled`` as usual; jobs a handler enqueues
    (inline, the handler would wait for a worker it may itself hold) and jobs enqueued
    in the application's transaction (``connection=``: they exist once it commits) run
    as usual: ``drain()`` waits for those.
    """
    options.setdefault("shutdown_grace", 0)
    options.setdefault("poll_interval", 0.01)
    with contextlib.ExitStack() as cleanup:
        if db is None:
            tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-test-"))
            db = Path(tmp) / "jobs.db"
        async with TestRuntime(db, queues=queues, inline=inline, **options) as rt:
            yield rt


def matches(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` (a stored payload) has what ``expected`` asks for: a dict, its
    keys with matching values (others may be there too), recursively; a list, the same
    length and each item matching; anything else, equality."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _plain(payload: Any) -> Any:
    """A payload as the store keeps it (a msgspec Struct or dataclass as its dict)."""
    try:
        return msgspec.to_builtins(payload)
    except (TypeError, msgspec.EncodeError):
        raise ValidationError(
            f"payload must be a JSON value or a msgspec Struct, not {type(payload).__name__}"
        ) from None
    except RecursionError:
        raise ValidationError("payload is nested too deeply to match") from None


async def _all_jobs(rt: JobOperations, queue: str) -> list[Job]:
    """Every job of ``queue``, oldest first."""
    jobs: list[Job] = []
    cursor: str | None = None
    while True:
        page = await rt.list_jobs(queue=queue, limit=MAX_LIST_LIMIT, cursor=cursor)
        jobs.extend(page)
        if len(page) < MAX_LIST_LIMIT:
            return jobs[::-1]
        cursor = page[-1].id


async def enqueued(rt: JobOperations, queue: str, payload: Any = None) -> list[Job]:
    """The jobs of ``queue`` in the store (whatever their status), oldest first; with
    ``payload``, only those whose payload matches it (see :func:`assert_enqueued`)."""
    name("queue", queue)
    jobs = await _all_jobs(rt, queue)
    if payload is None:
        return jobs
    wanted = _plain(payload)
    return [job for job in jobs if matches(wanted, job.payload)]


SHOWN_JOBS = 10  # jobs an assert_enqueued failure lists


async def assert_enqueued(
    rt: JobOperations, queue: str, *, payload: Any = None, count: int | None = None
) -> list[Job]:
    """Assert that ``queue`` has jobs matching ``payload`` and return them, oldest first.

    Every job stored counts, whatever its status: a job the workers already ran was
    still enqueued (they run as soon as it is stored, so counting only pending ones
    would race with them). ``payload`` matches a subset: a dict matches a payload that
    has its keys with matching values, recursively (None: any payload). ``count``: that
    many exactly (0 asserts there is none); None: at least one. AssertionError, listing
    what the queue has, otherwise.
    """
    if count is not None:
        integer("count", count, 0, 2**31 - 1)
    matching = await enqueued(rt, queue, payload)
    if (len(matching) > 0) if count is None else (len(matching) == count):
        return matching
    everything = matching if payload is None else await enqueued(rt, queue)
    wanted = "at least 1 job" if count is None else f"{count} job{'s' * (count != 1)}"
    what = "" if payload is None else f" with a payload matching {_plain(payload)!r}"
    lines = [f"expected {wanted} on queue {queue!r}{what}, found {len(matching)}"]
    if not everything:
        lines.append(f"queue {queue!r} has no jobs")
    else:
        lines.append(f"queue {queue!r} has {len(everything)}:")
        lines.extend(
            f"  {job.id} {job.status.value}: {job.payload!r}" for job in everything[:SHOWN_JOBS]
        )
        if len(everything) > SHOWN_JOBS:
            lines.append(f"  ... and {len(everything) - SHOWN_JOBS} more")
    raise AssertionError("\n".join(lines))
