"""Property tests of conveyor.sync's entry points: whatever a caller passes, the sync
Client and the Producer end as the Runtime does (done, or the same ConveyorError naming
the field), within a bound, never another exception; and the store still reads back.

The Runtime serves from the test's event loop; hypothesis drives the sync entry points
from a worker thread, as a web app's request thread would, and the Runtime through
``anyio.from_thread``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import ConveyorError, JobStatus, Runtime, ValidationError
from conveyor.sync import Client, Producer

from ..e2e.test_boundaries import (
    LIMITS,
    MATCH_OPTIONS,
    OPTION_VALUES,
    SETTINGS,
    Echo,
    anything,
    assert_readable,
    meta_values,
    still_serves,
    tag_values,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

BOUND = 20.0  # seconds any one call may take


@pytest.fixture
async def rt(location: str) -> AsyncIterator[Runtime]:
    async with Runtime(
        location, queues=[Echo()], serve=("127.0.0.1", 0), limits=LIMITS, shutdown_grace=0
    ) as runtime:
        yield runtime


def outcome(call: Any) -> str:
    """How a call ended: "done", or the ConveyorError's class (within BOUND)."""
    started = time.monotonic()
    try:
        call()
        result = "done"
    except ConveyorError as exc:
        result = type(exc).__name__
    assert time.monotonic() - started < BOUND, "a call took too long"
    return result


def on_runtime(rt: Runtime, op: str, *args: Any, **kwargs: Any) -> str:
    async def run() -> None:
        with anyio.fail_after(BOUND):
            await getattr(rt, op)(*args, **kwargs)

    return outcome(lambda: anyio.from_thread.run(run))


options = st.fixed_dictionaries({}, optional=OPTION_VALUES)  # meta and tags included
runs = 0


async def test_the_sync_client_and_the_producer_refuse_what_the_runtime_refuses(
    rt: Runtime, location: str
) -> None:
    # The Client checks before sending what any runtime would refuse (the server, its
    # sizes and types); the Producer is a runtime: so all three end alike.
    def fuzz_all() -> None:
        with Client(rt.server_url) as client, Producer(location, [Echo()], limits=LIMITS) as prod:

            @SETTINGS
            @given(anything, options, st.booleans())
            def fuzz(payload: Any, opts: dict[str, Any], many: bool) -> None:
                global runs
                runs += 1
                if many:
                    opts.pop("unique_key", None)
                    by_runtime = on_runtime(rt, "enqueue_many", "echo", [payload], **opts)
                    by_producer = outcome(lambda: prod.enqueue_many("echo", [payload], **opts))
                    assert by_producer == by_runtime, (payload, opts)
                    return
                by_runtime = on_runtime(rt, "enqueue", "echo", payload, **opts)
                by_client = outcome(lambda: client.enqueue("echo", payload, **opts))
                by_producer = outcome(lambda: prod.enqueue("echo", payload, **opts))
                assert by_client == by_producer == by_runtime, (payload, opts)

            fuzz()

    await anyio.to_thread.run_sync(fuzz_all)
    assert runs >= 100
    await assert_readable(rt, location)
    await still_serves(rt)


SHARED = (
    "job",
    "job_status",
    "cancel",
    "request_job_cancel",
    "list_jobs",
    "history",
    "rerun",
    "purge",
    "queue_counts",
    "queue_states",
    "pause",
    "resume",
    "cancel_matching",
    "rerun_matching",
    "workers",
)
ARITY = {"job": 1, "history": 1, "cancel": 1, "rerun": 1, "pause": 1, "resume": 1}
ARITY |= {"job_status": 2, "request_job_cancel": 2}
KEYWORDS = {
    "list_jobs": ("queue", "status", "limit", "cursor", "tags", "meta"),
    "purge": ("older_than", "statuses", "queue"),
    "cancel_matching": MATCH_OPTIONS,
    "rerun_matching": (*MATCH_OPTIONS, "by"),
    "rerun": ("by",),
    "pause": ("by",),
}
known = anything | st.sampled_from(["echo", "completed", "failed"])
VALUES = {"tags": tag_values, "meta": meta_values}  # the rest: known
calls = st.sampled_from(SHARED).flatmap(
    lambda op: st.tuples(
        st.just(op),
        st.tuples(*[known] * ARITY.get(op, 0)),
        st.fixed_dictionaries({}, optional={k: VALUES.get(k, known) for k in KEYWORDS.get(op, ())}),
    )
)


async def test_every_sync_client_call_ends_as_the_runtimes(rt: Runtime, location: str) -> None:
    job = await rt.enqueue("echo", {"seed": 1})
    await rt.wait(job.id, timeout=30)

    def fuzz_all() -> None:
        with Client(rt.server_url) as client:

            @SETTINGS
            @given(calls, st.booleans())
            def fuzz(call: tuple[str, tuple[Any, ...], dict[str, Any]], real_id: bool) -> None:
                global runs
                runs += 1
                op, args, kwargs = call
                # A job that exists, now and then (not for rerun: the Runtime's rerun
                # makes the job pending, so the client's, right after, is refused).
                if real_id and op in ARITY and op != "rerun":
                    args = (*args[:-1], job.id)
                by_runtime = on_runtime(rt, op, *args, **kwargs)
                by_client = outcome(lambda: getattr(client, op)(*args, **kwargs))
                # Done by both, or refused by both; what the Runtime finds unfit the
                # client refuses alike. (Which refusal comes first may differ: the client
                # checks its arguments before the server looks up the queue they name.)
                assert (by_client == "done") == (by_runtime == "done"), (op, args, kwargs)
                if by_runtime == "ValidationError":
                    assert by_client == "ValidationError", (op, args, kwargs)

            fuzz()

            @SETTINGS
            @given(known, known, st.sampled_from([None, 0, 0.01]))
            def fuzz_waits(job_id: Any, statuses: Any, timeout: Any) -> None:
                # wait() and events(): refused or bounded, never stuck nor a crash.
                assert outcome(lambda: client.wait(job_id, timeout=timeout or 0.01)) in (
                    "done",
                    "ValidationError",
                    "JobNotFound",
                    "WaitTimeout",
                )

                def first_event() -> None:
                    with client.events(job_id=job_id, timeout=0.05) as events:
                        next(events)

                result = outcome(first_event)
                assert result in ("done", "ValidationError", "JobNotFound", "WaitTimeout"), result
                result = outcome(lambda: client.events(statuses=statuses, timeout=timeout))
                assert result in ("done", "ValidationError"), result

            fuzz_waits()

    await anyio.to_thread.run_sync(fuzz_all)
    await assert_readable(rt, location)
    await still_serves(rt)


async def test_the_constructors_refuse_anything_unfit(tmp_path: Path) -> None:
    def fuzz_all() -> None:
        @SETTINGS
        @given(
            st.fixed_dictionaries(
                {},
                optional=dict.fromkeys(
                    ("url", "token", "request_timeout", "min_backoff", "max_backoff"), anything
                )
                | {"max_message_bytes": anything},
            )
        )
        def fuzz_client(kwargs: dict[str, Any]) -> None:
            url = kwargs.pop("url", "ws://127.0.0.1:1")
            try:
                Client(url, **kwargs).close()  # no connection is opened before a call
            except ValidationError:
                pass

        fuzz_client()

        @SETTINGS
        @given(anything, anything, anything)
        def fuzz_producer(queues: Any, call_timeout: Any, limits: Any) -> None:
            started = time.monotonic()
            for kwargs in ({"call_timeout": call_timeout}, {"limits": limits}):
                try:
                    Producer(tmp_path / "p.db", queues, **kwargs).close()
                except ConveyorError:
                    pass
            assert time.monotonic() - started < BOUND

        fuzz_producer()

    await anyio.to_thread.run_sync(fuzz_all)
    async with Runtime(tmp_path / "p.db", workers=False) as observer:
        assert await observer.list_jobs() == []


async def test_statuses_are_checked_before_a_connection_is_made() -> None:
    with pytest.raises(ValidationError, match="statuses"):
        Client("ws://127.0.0.1:1").events(statuses=[JobStatus.QUEUED, "bogus"])
