"""The ``conveyor`` command, run as a real subprocess against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import JobStatus, Queue, Runtime, StoreBusy

from ..conftest import wait_until

pytestmark = pytest.mark.anyio


class Work(Queue):
    name = "work"

    async def handle_item(self, item: dict[str, Any]) -> Any:
        if item.get("fail"):
            raise ValueError("broken row")
        if item.get("hold"):
            await anyio.sleep_forever()
        self.report_progress(current=1, total=1, message="done")
        return item


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``conveyor ARGS`` as a running process (its output piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def conveyor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd,
        )

    return await anyio.to_thread.run_sync(run)


@pytest.fixture
async def rt(db_path: Path) -> AsyncIterator[Runtime]:
    async with Runtime(
        db_path, queues=[Work()], serve=("127.0.0.1", 0), shutdown_grace=0
    ) as runtime:
        yield runtime


async def test_jobs_ls_show_cancel_rerun_purge(rt: Runtime) -> None:
    url = ["--url", rt.server_url]
    ok = await rt.enqueue("work", {"n": 1})
    bad = await rt.enqueue("work", {"fail": True})
    held = await rt.enqueue("work", {"hold": True})
    await rt.wait(ok.id, timeout=10)
    await rt.wait(bad.id, timeout=10)

    listed = await conveyor("jobs", "ls", *url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {j["id"] for j in json.loads(listed.stdout)} == {ok.id, bad.id, held.id}
    failed = await conveyor("jobs", "ls", *url, "--status", "failed", "--json")
    assert [j["id"] for j in json.loads(failed.stdout)] == [bad.id]

    table = await conveyor("jobs", "ls", *url)
    assert table.returncode == 0
    assert ok.id in table.stdout
    assert "failed" in table.stdout

    shown = await conveyor("jobs", "show", bad.id, *url, "--json")
    body = json.loads(shown.stdout)
    assert body["job"]["error"] == "ValueError: broken row"
    assert [h["status"] for h in body["history"]] == ["queued", "running", "failed"]
    details = await conveyor("jobs", "show", bad.id, *url)
    assert "broken row" in details.stdout
    assert "Traceback" in details.stdout

    cancelled = await conveyor("jobs", "cancel", held.id, *url, "--json")
    assert json.loads(cancelled.stdout)["status"] in ("cancelling", "cancelled")
    assert (await rt.wait(held.id, timeout=10)).status is JobStatus.CANCELLED
    rerun = await conveyor("jobs", "rerun", bad.id, *url, "--json")
    assert json.loads(rerun.stdout)["status"] == "queued"
    await rt.wait(bad.id, timeout=10)
    purged = await conveyor("jobs", "purge", *url, "--all", "--status", "completed", "--json")
    assert json.loads(purged.stdout) == {"deleted": 1}


@pytest.mark.timeout(240)  # some thirty runs of the command, a second or two each
async def test_jobs_ls_filters_by_tag_and_meta_and_show_lists_them(
    rt: Runtime, db_path: Path
) -> None:
    acme = await rt.enqueue(
        "work", {"n": 1}, meta={"tenant": "acme", "note": "[/x] [bold]k=v"}, tags=["import", "eu"]
    )
    other = await rt.enqueue("work", {"n": 2}, meta={"tenant": "other"}, tags=["import"])
    await rt.enqueue("work", {"n": 3})
    for where in (["--url", rt.server_url], ["--db", str(db_path)]):

        async def ids(*filters: str, where: list[str] = where) -> list[str]:
            listed = await conveyor("jobs", "ls", *where, *filters, "--json")
            assert listed.returncode == 0, listed.stderr
            return [j["id"] for j in json.loads(listed.stdout)]

        assert await ids("--tag", "import") == [other.id, acme.id]
        assert await ids("--tag", "import", "--tag", "eu") == [acme.id]
        assert await ids("--meta", "tenant=acme") == [acme.id]
        assert await ids("--meta", "note=[/x] [bold]k=v") == [acme.id]  # split at the first =
        assert await ids("--tag", "import", "--meta", "tenant=nobody") == []
        table = await conveyor("jobs", "ls", *where, "--tag", "eu")
        assert "import, eu" in table.stdout
        shown = await conveyor("jobs", "show", acme.id, *where)
        assert shown.returncode == 0, shown.stderr  # its meta is text, not rich markup
        assert '"tenant":"acme"' in shown.stdout
        assert "[/x] [bold]k=v" in shown.stdout
        assert '["import","eu"]' in shown.stdout
        body = json.loads((await conveyor("jobs", "show", acme.id, *where, "--json")).stdout)
        assert (body["job"]["meta"], body["job"]["tags"]) == (acme.meta, acme.tags)
    # Mistakes: one line each, naming what is wrong (the runtime's checks: on the file
    # as on a server, whose refusals the wire and Client tests cover).
    for args, code, says in (
        (("--meta", "tenant"), 2, "KEY=VALUE"),
        (("--meta", "=acme"), 2, "KEY=VALUE"),
        (("--meta", "a=1", "--meta", "a=2"), 2, "given twice"),
        (("--meta", "a b=1"), 1, "meta key"),
        (("--tag", "a b"), 1, "tags[0]"),
    ):
        refused = await conveyor("jobs", "ls", "--db", str(db_path), *args)
        assert refused.returncode == code, (args, refused.stderr)
        assert says in refused.stderr
        assert "Traceback" not in refused.stderr


async def test_queues_ls_pause_resume_on_a_server_and_on_the_file(
    rt: Runtime, db_path: Path
) -> None:
    url = ["--url", rt.server_url]
    paused = await conveyor("queues", "pause", "work", *url, "--by", "ops", "--json")
    assert paused.returncode == 0, paused.stderr
    assert (json.loads(paused.stdout)["paused"], json.loads(paused.stdout)["paused_by"]) == (
        True,
        "ops",
    )
    waiting = await rt.enqueue("work", {"n": 2})
    listed = await conveyor("queues", "ls", "--db", str(db_path), "--json")
    [work] = [q for q in json.loads(listed.stdout) if q["name"] == "work"]
    assert (work["paused"], work["paused_by"]) == (True, "ops")
    table = await conveyor("queues", "ls", *url)
    assert table.returncode == 0
    assert "paused" in table.stdout
    assert (await rt.job(waiting.id)).status is JobStatus.QUEUED  # paused here at once
    resumed = await conveyor("queues", "resume", "work", "--db", str(db_path), "--json")
    assert json.loads(resumed.stdout)["paused"] is False
    with anyio.fail_after(10):  # heard from the file within a poll interval
        assert (await rt.wait(waiting.id)).status is JobStatus.COMPLETED
    workers = await conveyor("workers", "--db", str(db_path), "--json")
    assert [w["pid"] for w in json.loads(workers.stdout)] == [os.getpid()], workers.stderr
    table = await conveyor("workers", *url)
    assert "alive" in table.stdout
    ghost = await conveyor("queues", "pause", "ghost", "--db", str(db_path))  # ahead of workers
    assert ghost.returncode == 0
    assert "no jobs and no worker runs it" in ghost.stderr
    await conveyor("queues", "resume", "ghost", "--db", str(db_path))
    unknown = await conveyor("queues", "pause", "nope", *url)
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr


async def test_jobs_cancel_and_rerun_matching(rt: Runtime, db_path: Path) -> None:
    jobs = [await rt.enqueue("work", {"hold": True}, created_by="cron") for _ in range(3)]
    other = await rt.enqueue("work", {"n": 1})  # not cron's: left alone
    unfiltered = await conveyor("jobs", "cancel-matching", "--url", rt.server_url)
    assert unfiltered.returncode == 2
    assert "filter" in unfiltered.stderr
    cancelled = await conveyor(
        "jobs", "cancel-matching", "--url", rt.server_url, "--created-by", "cron", "--json"
    )
    assert json.loads(cancelled.stdout) == {"cancelled": 3}, cancelled.stderr
    with anyio.fail_after(10):
        for job in jobs:
            assert (await rt.wait(job.id)).status is JobStatus.CANCELLED
    rerun = await conveyor(
        "jobs",
        "rerun-matching",
        "--db",
        str(db_path),
        "--queue",
        "work",
        "--status",
        "cancelled",
        "--by",
        "alice",
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "rerun 3 jobs" in rerun.stdout
    assert "rerun by alice" in [h.message for h in await rt.history(jobs[0].id)]
    assert (await rt.job(other.id)).status is not JobStatus.CANCELLED


async def test_mistakes_print_one_line_and_exit_non_zero(rt: Runtime) -> None:
    missing = await conveyor("jobs", "show", "nope", "--url", rt.server_url)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("conveyor:")
    assert "nope" in missing.stderr
    assert "Traceback" not in missing.stderr
    unreachable = await conveyor("jobs", "ls", "--url", "ws://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1
    bad_target = await conveyor("worker", "no_colon_here")
    assert bad_target.returncode == 2
    assert "MODULE:ATTR" in bad_target.stderr
    unknown = await conveyor("worker", "not_a_module_anywhere:rt")
    assert unknown.returncode == 2
    assert "cannot import" in unknown.stderr


async def test_worker_runs_an_app_runtime_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            f"""
            from conveyor import Queue, Runtime

            class Greet(Queue):
                name = "greet"

                async def handle_item(self, item):
                    return "hello " + item["name"]

            def make_runtime():
                return Runtime({str(db)!r}, queues=[Greet()])
            """
        )
    )

    class Greet(Queue):
        name = "greet"

    proc = start("worker", "myapp:make_runtime", cwd=tmp_path)
    try:
        async with Runtime(db, queues=[Greet()], workers=False) as client:
            job = await client.enqueue("greet", {"name": "ada"})
            with anyio.fail_after(30):
                done = await client.wait(job.id)
            assert done.result == "hello ada"
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await wait_until(lambda: proc.poll() is not None, 0.05)
        output = proc.stdout.read() if proc.stdout else ""
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert "running greet" in output
        assert "stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_an_error_a_task_group_wrapped_alone_is_still_one_line() -> None:
    from conveyor.cli import _user_error

    busy = StoreBusy("locked")
    assert _user_error(ExceptionGroup("tg", [ExceptionGroup("inner", [busy])])) is busy
    assert _user_error(ExceptionGroup("tg", [busy, OSError("x")])) is None  # two: a bug's
    assert _user_error(ExceptionGroup("tg", [ValueError("bug")])) is None


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database, just text " * 100)
    result = await conveyor("jobs", "ls", "--db", str(bogus))
    assert result.returncode == 1
    assert result.stderr.startswith("conveyor: ")
    assert len(result.stderr.strip().splitlines()) == 1


async def test_a_postgresql_server_that_does_not_answer() -> None:
    url = "postgresql://app:secret@127.0.0.1:1/jobs"
    for args in (("jobs", "ls", "--db", url), ("serve", "--db", url, "--port", "0")):
        result = await conveyor(*args)
        assert result.returncode == 1
        assert result.stderr.startswith("conveyor: postgresql://app@127.0.0.1:1/jobs (schema")
        assert len(result.stderr.strip().splitlines()) == 1
        assert "secret" not in result.stderr + result.stdout
