"""conveyor migrate: a SQLite queue database copied into PostgreSQL, round trip (every job
and history row, periodic state, paused queues, the stream's position), refused while a
worker runs on the file, and into a schema that holds jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import Job, JobStatus, Queue, Runtime

from ..conftest import Worker, postgres_schema, wait_until
from .test_cli import conveyor

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


class Orders(Queue):
    name = "orders"
    max_attempts = 1

    async def handle_item(self, item: dict[str, Any]) -> Any:
        if item.get("fail"):
            raise ValueError("no such customer")
        self.report_progress(current=1, total=1, message="done")
        return {"total": item["n"] * 10}


class Nightly(Queue):
    name = "nightly"
    periodic = 86400.0  # its first_seen is stored at start; no tick within the test

    async def handle_item(self, item: Any) -> None:
        return None


async def everything(rt: Runtime) -> tuple[list[Job], dict[str, list[Any]], list[Any]]:
    jobs: list[Job] = []
    cursor = None
    while page := await rt.list_jobs(limit=1000, cursor=cursor):
        jobs += page
        cursor = page[-1].id
    histories = {job.id: await rt.history(job.id) for job in jobs}
    return jobs, histories, await rt.missed_events(0, limit=10_000)


async def test_a_sqlite_database_moves_to_postgresql_whole(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Orders(), Nightly()]) as rt:
        done = await rt.enqueue_many(
            "orders", [{"n": n} for n in range(30)], meta={"tenant": "acme"}, tags=["bulk"]
        )
        failed = await rt.enqueue(
            "orders", {"fail": True}, created_by="api", meta={"tenant": "b", "k": ""}, tags=["x"]
        )
        for job in [*done, failed]:
            await rt.wait(job.id, timeout=10)
        await rt.enqueue("orders", {"n": 99}, delay=3600, unique_key="later")
        await rt.pause("orders", by="ops")
        waiting = await rt.enqueue("orders", {"n": 7})
        first_seen = await rt._engine.writes.periodic_first_seen("nightly", 0)
    async with Runtime(db_path, workers=False) as rt:
        before = await everything(rt)
        last_seq = max(e.seq for e in before[2])

    async with postgres_schema() as url:
        moved = await conveyor("migrate", "--from", str(db_path), "--to", url, "--json")
        assert moved.returncode == 0, moved.stderr
        report = json.loads(moved.stdout)
        assert report["copied"]["jobs"] == len(before[0]) == 33
        assert report["copied"]["job_history"] == len(before[2])
        assert (report["copied"]["periodic"], report["copied"]["paused_queues"]) == (1, 1)
        assert report["last_seq"] == last_seq

        async with Runtime(url, workers=False) as rt:
            assert await everything(rt) == before  # jobs, histories, the stream: the same
            # Meta and tags too (in everything's jobs), and the lists filter by them there.
            assert len(await rt.list_jobs(tags=["bulk"], meta={"tenant": "acme"})) == 30
            [copied] = await rt.list_jobs(meta={"k": ""})
            assert (copied.id, copied.meta, copied.tags) == (failed.id, failed.meta, ["x"])
            [orders] = [q for q in await rt.queue_states() if q.name == "orders"]
            assert (orders.paused, orders.paused_by) == (True, "ops")
            assert await rt._engine.writes.periodic_first_seen("nightly", 1e12) == first_seen

        async with Runtime(url, queues=[Orders(), Nightly()]) as rt:
            assert (await rt.job(waiting.id)).status is JobStatus.QUEUED  # still paused
            async with rt.events() as stream:
                await rt.resume("orders")
                with anyio.fail_after(10):
                    assert (await rt.wait(waiting.id)).result == {"total": 70}
                    async for event in stream:  # the stream goes on after the copy's
                        assert event.seq > last_seq
                        if event.job_id == waiting.id and event.status is JobStatus.COMPLETED:
                            break
            resumed = await rt.missed_events(last_seq)
            assert [e.job_id for e in resumed if e.status is JobStatus.COMPLETED] == [waiting.id]

        again = await conveyor("migrate", "--from", str(db_path), "--to", url)
        assert again.returncode == 1
        assert "holds jobs already" in again.stderr


async def test_migrate_refuses_while_a_worker_runs_on_the_file(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Orders()], workers=False) as rt:
        await rt.enqueue("orders", {"n": 1})
    worker = Worker(str(db_path))
    try:
        async with Runtime(db_path, workers=False) as rt:
            with anyio.fail_after(30):
                await wait_until(lambda: any_worker(rt), 0.05)
        async with postgres_schema() as url:
            refused = await conveyor("migrate", "--from", str(db_path), "--to", url)
            assert refused.returncode == 1
            assert "workers run on" in refused.stderr
            async with Runtime(url, workers=False) as rt:
                assert await rt.list_jobs() == []  # nothing was copied
    finally:
        worker.kill()
        if worker.proc.stdout is not None:
            worker.proc.stdout.close()


async def any_worker(rt: Runtime) -> bool:
    return bool(await rt.workers())


async def test_migrate_says_what_it_needs() -> None:
    wrong = await conveyor("migrate", "--from", "postgresql://x/y", "--to", "postgresql://x/z")
    assert wrong.returncode == 2
    assert "SQLite file" in wrong.stderr
    missing = await conveyor("migrate", "--from", "/nonexistent.db", "--to", "postgresql://x/z")
    assert missing.returncode == 2
