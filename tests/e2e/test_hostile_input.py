"""The mistakes and hostile values users really pass, each once by name: the job they
touch ends with a reason, the runtime keeps serving, and every row still reads back.
(test_boundaries.py drives the same entry points with generated values.)"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from conveyor import (
    ConveyorError,
    JobStatus,
    Limits,
    Queue,
    Runtime,
    StoreUnavailable,
    ValidationError,
)
from conveyor.client import Client
from conveyor.engine._batcher import Batcher

pytestmark = pytest.mark.anyio


class Reporter(Queue):
    name = "reporter"

    async def handle_item(self, item: str) -> Any:
        match item:
            case "current-str":
                self.report_progress(current="3", total=5)  # type: ignore[arg-type]
            case "nan":
                self.report_progress(current=float("nan"))
            case "message-int":
                self.report_progress(message=123)  # type: ignore[arg-type]
            case "message-path":
                self.report_progress(message=pathlib.Path("/tmp/x"))  # type: ignore[arg-type]
            case "unprintable":
                raise Unprintable()
            case "huge-error":
                raise ValueError("e" * 200_000)
            case "huge-result":
                return "r" * 5000
            case "keyboard-interrupt":
                raise KeyboardInterrupt  # raised by the handler itself, not a Ctrl-C
            case "inf-result":
                return {"ratio": float("inf")}
            case "caught":
                try:
                    self.report_progress(current=float("inf"))
                except ValidationError:
                    return "went on"
        return "ok"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() fails")


class Other(Queue):
    name = "other"

    async def handle_item(self, item: Any) -> Any:
        return item


LIMITS = Limits(result_bytes=1000, error_bytes=2000, traceback_bytes=4000)


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("current-str", "report_progress(current=) must be a number, not str"),
        ("nan", "report_progress(current=) must be a finite number"),
        ("message-int", "report_progress(message=) must be a string, not int"),
        ("message-path", "report_progress(message=) must be a string, not PosixPath"),
        ("unprintable", "Unprintable (its message could not be read)"),
        ("huge-error", "[cut to the 2000-byte limit"),
        ("huge-result", "over the 1000-byte limit (Limits.result_bytes)"),
        ("keyboard-interrupt", "KeyboardInterrupt"),
        ("inf-result", "holds inf or nan"),
    ],
)
async def test_a_bad_handler_fails_its_job_and_nothing_else(
    db_path: Path, how: str, error: str
) -> None:
    async with Runtime(
        db_path, queues=[Reporter(), Other()], serve=("127.0.0.1", 0), limits=LIMITS
    ) as rt:
        with anyio.fail_after(20):
            job = await rt.enqueue("reporter", how)
            done = await rt.wait(job.id)
            assert done.status is JobStatus.FAILED
            assert error in (done.error or "")
            assert len((done.error or "").encode()) <= LIMITS.error_bytes
            assert len((done.traceback or "").encode()) <= LIMITS.traceback_bytes
            other = await rt.enqueue("other", {"still": "served"})
            assert (await rt.wait(other.id)).result == {"still": "served"}
            assert {j.id for j in await rt.list_jobs()} == {job.id, other.id}
            url = rt.server_url.replace("ws://", "http://") + "/api/jobs"
            body = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read())
            assert len(json.loads(body)["jobs"]) == 2
    listed = await anyio.to_thread.run_sync(lambda: cli("jobs", "ls", "--db", str(db_path)))
    assert listed.returncode == 0, listed.stderr
    assert job.id in listed.stdout


async def test_a_caught_validation_error_lets_the_handler_go_on(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Reporter()]) as rt:
        job = await rt.enqueue("reporter", "caught")
        assert (await rt.wait(job.id, timeout=10)).result == "went on"


async def test_rows_that_do_not_decode_are_reported_and_the_rest_still_read(
    db_path: Path,
) -> None:
    async with Runtime(db_path, queues=[Other()]) as rt:
        jobs = [await rt.enqueue("other", i) for i in range(3)]
        for job in jobs:
            await rt.wait(job.id, timeout=10)
    bad = jobs[1].id
    with sqlite3.connect(db_path) as conn:  # a hand edit, or a bug of some older version
        conn.execute(
            "UPDATE jobs SET payload = ?, result = ?, progress = ?, meta = ?, tags = ?"
            " WHERE id = ?",
            (b"{not json", b"[1,", b'{"current": "x"}', '{"k": 1}', '["a", 2]', bad),
        )
    broken = jobs[2].id
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE jobs SET status = 'exploded' WHERE id = ?", (broken,))
    async with Runtime(db_path, queues=[Other()], serve=("127.0.0.1", 0)) as rt:
        listed = {j.id: j for j in await rt.list_jobs()}
        assert set(listed) == {jobs[0].id, bad}  # the unreadable status is left out
        assert listed[bad].payload == "{not json"
        assert listed[bad].result == "[1,"
        assert "unreadable" in (listed[bad].progress.message or "")
        assert listed[bad].meta == {"conveyor.unreadable": '{"k": 1}'}
        assert listed[bad].tags == ["conveyor.unreadable"]
        with pytest.raises(ConveyorError, match="cannot be read"):
            await rt.job(broken)
        url = rt.server_url.replace("ws://", "http://") + "/api/jobs"
        body = await anyio.to_thread.run_sync(lambda: urllib.request.urlopen(url).read())
        assert len(json.loads(body)["jobs"]) == 2
        still = await rt.enqueue("other", "new")
        assert (await rt.wait(still.id, timeout=10)).result == "new"
    shown = await anyio.to_thread.run_sync(lambda: cli("jobs", "show", bad, "--db", str(db_path)))
    assert shown.returncode == 0, shown.stderr


async def test_one_refused_item_never_fails_the_good_ones_beside_it() -> None:
    """The group-commit batcher, with a flush that refuses one poison item (as a store
    refuses a value it cannot hold): the others are written, the submit() that held the
    poison gets the error alone, and a put() poison is written as its salvage."""
    written: list[str] = []

    async def flush(items: list[str]) -> list[str]:
        if "poison" in items:
            raise ValueError("the store cannot hold 'poison'")
        written.extend(items)
        return [f"ok:{item}" for item in items]

    batcher: Batcher[str, str] = Batcher(
        flush, name="test", salvage=lambda item, exc: f"salvaged {item}"
    )
    results: dict[str, Any] = {}

    async def submit(*items: str) -> None:
        try:
            results[items[0]] = await batcher.submit(items)
        except ConveyorError as exc:
            results[items[0]] = exc

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            async with anyio.create_task_group() as producers:
                producers.start_soon(submit, "a", "b")
                producers.start_soon(submit, "poison", "c")
                producers.start_soon(submit, "d")
                await batcher.put("e")
                await batcher.put("poison")
            await batcher.drain()
            tg.cancel_scope.cancel()
    assert results["a"] == ["ok:a", "ok:b"]
    assert results["d"] == ["ok:d"]
    assert isinstance(results["poison"], ConveyorError)
    assert "c" not in written  # all of a submit() or none of it
    assert set(written) == {"a", "b", "d", "e", "salvaged poison"}


async def test_a_passing_store_failure_is_retried_not_isolated() -> None:
    calls: list[list[str]] = []

    async def flush(items: list[str]) -> list[None]:
        calls.append(list(items))
        if len(calls) == 1:
            raise StoreUnavailable("disk full")
        return [None] * len(items)

    batcher: Batcher[str, None] = Batcher(flush, name="test", retry_delay=0.01)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(batcher.run)
            await batcher.put("x")
            await batcher.put("y")
            await batcher.drain()
            tg.cancel_scope.cancel()
    assert calls[-1] == ["x", "y"]  # written together once the store was back


async def test_events_of_a_finished_job_start_with_its_state(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Other()], serve=("127.0.0.1", 0)) as rt:
        job = await rt.enqueue("other", 1)
        await rt.wait(job.id, timeout=10)
        with anyio.fail_after(10):
            async for event in rt.events(job_id=job.id):
                assert event.status is JobStatus.COMPLETED
                break
            async with Client(rt.server_url) as client:
                stream = client.events(job_id=job.id)
                event = await anext(stream)
                await stream.aclose()
                assert event.status is JobStatus.COMPLETED
                assert event.seq == (await rt.history(job.id))[-1].seq


async def test_events_of_a_running_job_start_with_it_then_follow(db_path: Path) -> None:
    release = anyio.Event()

    class Held(Queue):
        name = "held"

        async def handle_item(self, item: Any) -> str:
            self.report_progress(1, 2, "half")
            await release.wait()
            return "done"

    async with Runtime(db_path, queues=[Held()]) as rt:
        with anyio.fail_after(10):
            job = await rt.enqueue("held", None)
            async with rt.events(job_id=job.id, statuses=[JobStatus.RUNNING]) as ready:
                async for event in ready:
                    if event.progress.message == "half":
                        break
            seen = []
            async with rt.events(job_id=job.id) as stream:
                async for event in stream:
                    seen.append(event)
                    if event.status is JobStatus.RUNNING:
                        release.set()
                    if event.status.is_terminal:
                        break
        assert seen[0].status is JobStatus.RUNNING
        assert seen[0].progress.message == "half"
        assert seen[-1].status is JobStatus.COMPLETED
        assert [e.seq for e in seen] == sorted(e.seq for e in seen)


async def test_events_of_an_unknown_job_is_job_not_found(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Other()]) as rt:
        with pytest.raises(ConveyorError, match="unknown job"):
            async for _ in rt.events(job_id="nope"):
                pass


async def test_replies_over_a_mebibyte_reach_the_client_and_big_lists_page(
    db_path: Path,
) -> None:
    async with Runtime(db_path, queues=[Other()], workers=False, serve=("127.0.0.1", 0)) as rt:
        await rt.enqueue_many("other", [{"blob": "x" * 100_000} for _ in range(20)])
        async with Client(rt.server_url) as client:
            assert len(await client.list_jobs(limit=50)) == 20  # a 2 MB reply
            await rt.enqueue_many("other", [{"blob": "y" * 900_000} for _ in range(10)])
            first = await client.list_jobs(limit=50)
            assert 1 <= len(first) < 30  # over the reply budget: a shorter page
            rest = await client.list_jobs(limit=50, cursor=first[-1].id)
            more = await client.list_jobs(limit=50, cursor=rest[-1].id) if rest else []
            ids = [j.id for j in first + rest + more]
            assert len(ids) == len(set(ids))
        listed = await anyio.to_thread.run_sync(
            lambda: cli("jobs", "ls", "--url", rt.server_url, "--limit", "20", "--json")
        )
        assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("[" * 100_000 + "]" * 100_000, "bad_json"),
        ('{"id": 1, "op": "enqueue", "queue": "other", "payload": 1, "delay": 1e12}', "invalid"),
        (
            '{"id": 1, "op": "enqueue", "queue": "other", "payload": 1, "priority": 2e19}',
            "bad_request",
        ),
        (
            '{"id": 1, "op": "enqueue", "queue": "other", "payload": 1,'
            ' "max_attempts": 9223372036854775808}',
            "invalid",
        ),
        ('{"id": 1, "op": "subscribe", "since": 9223372036854775808}', "bad_request"),
        ('{"id": 1, "op": "job_status", "job_id": ""}', "invalid"),
    ],
)
async def test_hostile_wire_requests_get_an_error_reply(
    db_path: Path, message: str, code: str
) -> None:
    async with (
        Runtime(db_path, queues=[Other()], serve=("127.0.0.1", 0)) as rt,
        connect(rt.server_url) as ws,
    ):
        with anyio.fail_after(10):
            await ws.send(message)
            reply = json.loads(await ws.recv())
            assert (reply["type"], reply["code"]) == ("error", code)
            await ws.send('{"id": 2, "op": "queue_counts"}')
            assert json.loads(await ws.recv())["type"] == "result"  # still open


async def test_the_python_api_raises_validation_errors_for_the_same_values(
    db_path: Path,
) -> None:
    async with Runtime(db_path, queues=[Other()], workers=False) as rt:
        for options in (
            {"delay": 1e12},
            {"max_attempts": 2**63},
            {"priority": 2**63},
            {"timeout": float("inf")},
            {"created_by": "a\x00b"},
            {"created_by": "\ud800"},
            {"unique_key": "k" * 5000},
        ):
            with pytest.raises(ValidationError):
                await rt.enqueue("other", 1, **options)
        value: Any = []
        for _ in range(5000):
            value = [value]
        with pytest.raises(ValidationError, match="nested too deeply"):
            await rt.enqueue("other", value)
        with pytest.raises(ValidationError, match="inf or nan"):  # JSON would store null
            await rt.enqueue("other", {"ratio": [1.0, float("-inf")]})
        with pytest.raises(ValidationError, match=r"delay must be a number of seconds, not \[\["):
            await rt.enqueue("other", 1, delay=value)  # the message shows it short
        assert await rt.list_jobs() == []


def test_the_first_minute_of_the_command(tmp_path: Path) -> None:
    import conveyor

    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"conveyor {conveyor.__version__}"
    assert cli("jobs", "ls", "--help").returncode == 0
    missing = cli("jobs", "ls", env={"CONVEYOR_DB": "", "CONVEYOR_URL": ""})
    assert missing.returncode == 2
    assert "--url or --db" in missing.stderr
    bad_url = cli("jobs", "ls", "--url", "ftp://x")
    assert bad_url.returncode == 1
    assert "Traceback" not in bad_url.stderr
    assert len(bad_url.stderr.strip().splitlines()) == 1


async def test_env_urls_durations_purge_and_cancel(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Other()], serve=("127.0.0.1", 0)) as rt:
        job = await rt.enqueue("other", 1)
        await rt.wait(job.id, timeout=10)
        http_url = rt.server_url.replace("ws://", "http://")

        def run_all() -> None:
            by_env = cli("jobs", "ls", "--json", env={"CONVEYOR_DB": str(db_path)})
            assert by_env.returncode == 0, by_env.stderr
            assert json.loads(by_env.stdout)[0]["id"] == job.id
            by_http = cli("jobs", "show", job.id, "--url", http_url)
            assert by_http.returncode == 0, by_http.stderr
            by_url_env = cli("jobs", "ls", "--json", env={"CONVEYOR_URL": http_url})
            assert by_url_env.returncode == 0, by_url_env.stderr
            cancel = cli("jobs", "cancel", job.id, "--db", str(db_path))
            assert cancel.returncode == 1
            assert "already completed" in cancel.stderr
            bare = cli("jobs", "purge", "--db", str(db_path))
            assert bare.returncode == 2
            assert "--older-than" in bare.stderr
            aged = cli("jobs", "purge", "--db", str(db_path), "--older-than", "7d", "--json")
            assert json.loads(aged.stdout) == {"deleted": 0}
            nonsense = cli("jobs", "purge", "--db", str(db_path), "--older-than", "7 days")
            assert nonsense.returncode == 2
            assert "duration" in nonsense.stderr
            everything = cli("jobs", "purge", "--db", str(db_path), "--all", "--json")
            assert json.loads(everything.stdout) == {"deleted": 1}

        await anyio.to_thread.run_sync(run_all)
