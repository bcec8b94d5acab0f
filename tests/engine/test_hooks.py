"""A queue's lifecycle hooks: on_startup/on_shutdown once per runtime around its pool,
before_run/after_run around each run, what happens when each raises, and the checks
that refuse a hook that is not async."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import (
    HookFailed,
    Job,
    JobStatus,
    Queue,
    RunOutcome,
    Runtime,
    ValidationError,
    current_job,
)

from ..conftest import next_event, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Hooked(Queue):
    """Records every hook and run in order; the payload says what goes wrong where."""

    name = "hooked"
    worker_count = 2
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 0.0)

    def __init__(self) -> None:
        self.log: list[str] = []
        self.client: str | None = None  # what on_startup opens and on_shutdown closes
        self.held = anyio.Event()

    async def on_startup(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.client = "open"
        self.log.append("startup")

    async def on_shutdown(self) -> None:
        self.log.append(f"shutdown with client {self.client}")
        self.client = "closed"

    async def before_run(self, job: Job) -> None:
        assert current_job().id == job.id  # in the run's context
        self.log.append(f"before {job.payload['n']} attempt {job.attempts}")
        if job.payload.get("before_fails_once") and job.attempts == 1:
            raise ConnectionError("pool exhausted")

    async def handle_item(self, item: dict[str, Any]) -> str:
        assert self.client == "open"
        self.log.append(f"run {item['n']}")
        if item.get("hold"):
            self.held.set()
            await anyio.sleep_forever()
        if item.get("fails"):
            raise ValueError("bad row")
        return "ok"

    async def after_run(self, job: Job, outcome: RunOutcome) -> None:
        self.log.append(f"after {job.payload['n']}: {outcome.status} {outcome.error}")
        if job.payload.get("after_fails"):
            raise RuntimeError("metrics backend down")


async def test_hooks_run_in_order_and_see_every_end(db_path: Path) -> None:
    queue = Hooked()
    async with Runtime(db_path, queues=[Hooked()], workers=False) as producer:
        early = await producer.enqueue("hooked", {"n": 0})  # waiting before the start
    async with Runtime(db_path, queues=[queue], shutdown_grace=0) as rt:
        assert queue.log[0] == "startup"  # before the first claim: the job above waited
        assert (await rt.wait(early.id, timeout=10)).status is JobStatus.COMPLETED
        retried = await rt.enqueue("hooked", {"n": 1, "before_fails_once": True})
        failed = await rt.enqueue("hooked", {"n": 2, "fails": True}, max_attempts=1)
        logged = await rt.enqueue("hooked", {"n": 3, "after_fails": True})
        for job in (retried, failed, logged):
            await rt.wait(job.id, timeout=10)
        assert (await rt.job(retried.id)).attempts == 2
        assert (await rt.job(failed.id)).error == "ValueError: bad row"
        assert (await rt.job(logged.id)).status is JobStatus.COMPLETED  # after_run raised
        async with rt.events(queue="hooked") as events:
            held = await rt.enqueue("hooked", {"n": 4, "hold": True})
            await next_event(events, job_id=held.id, status=JobStatus.RUNNING)
        await rt.cancel(held.id)
        await rt.wait(held.id, timeout=10)
        with anyio.fail_after(10):  # after_run follows the outcome's hand-off
            await wait_until(lambda: "after 4: cancelled None" in queue.log)
    log = queue.log
    assert log[0] == "startup"
    assert log[-1] == "shutdown with client open"
    assert log.count("startup") == 1
    assert queue.client == "closed"
    assert log[1:4] == ["before 0 attempt 1", "run 0", "after 0: completed None"]
    assert "after 1: scheduled ConnectionError: pool exhausted" in log  # no run 1 then
    assert (
        log.index("before 1 attempt 2") < log.index("run 1") < log.index("after 1: completed None")
    )
    assert "after 2: failed ValueError: bad row" in log
    assert "after 3: completed None" in log


async def test_a_failing_on_startup_stops_the_start_and_names_the_queue(db_path: Path) -> None:
    started = Hooked()

    class Broken(Queue):
        name = "broken"

        async def on_startup(self) -> None:
            raise OSError("no route to the API")

        async def handle_item(self, item: Any) -> None:
            return None

    with pytest.raises(HookFailed) as failed:
        async with Runtime(db_path, queues=[started, Broken()]):
            pytest.fail("the runtime must not start")
    assert str(failed.value) == "queue 'broken': on_startup() failed: OSError: no route to the API"
    assert (failed.value.queue, failed.value.hook) == ("broken", "on_startup")
    assert isinstance(failed.value.__cause__, OSError)
    # The queue that had started gets its on_shutdown: its client is not leaked.
    assert started.log == ["startup", "shutdown with client open"]


async def test_a_failing_on_shutdown_is_logged_and_the_stop_goes_on(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Leaky(Queue):
        name = "leaky"

        async def on_shutdown(self) -> None:
            raise RuntimeError("close failed")

        async def handle_item(self, item: Any) -> str:
            return "ok"

    with caplog.at_level(logging.ERROR, logger="conveyor"):
        async with Runtime(db_path, queues=[Leaky()], shutdown_grace=0) as rt:
            job = await rt.enqueue("leaky", {})
            await rt.wait(job.id, timeout=10)
    assert any("on_shutdown() of queue 'leaky' failed" in r.getMessage() for r in caplog.records)


async def test_a_runtime_without_workers_runs_no_hooks(db_path: Path) -> None:
    queue = Hooked()
    async with Runtime(db_path, queues=[queue], workers=False) as rt:
        await rt.enqueue("hooked", {"n": 1})
    assert queue.log == []


@pytest.mark.parametrize("hook", ["on_startup", "on_shutdown", "before_run", "after_run"])
def test_a_hook_that_is_not_async_is_refused(hook: str, db_path: Path) -> None:
    def plain(self: Any, *args: Any) -> None:
        return None

    async def handle_item(self: Any, item: Any) -> None:
        return None

    with pytest.raises(ValidationError, match=rf"^Sync\.{hook} must be an async def method"):
        type("Sync", (Queue,), {"name": "q", "handle_item": handle_item, hook: plain})
    with pytest.raises(ValidationError, match=rf"^Odd\.{hook} must be an async def .* not 5"):
        type("Odd", (Queue,), {"name": "q", "handle_item": handle_item, hook: 5})

    class Fine(Queue):
        name = "q"

        async def handle_item(self, item: Any) -> None:
            return None

    queue = Fine()
    setattr(queue, hook, lambda *args: None)  # set on the instance: seen at Runtime()
    with pytest.raises(ValidationError, match=rf"^Fine\.{hook} must be an async def method"):
        Runtime(db_path, queues=[queue])
