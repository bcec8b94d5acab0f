"""Prometheus metrics: GET /metrics on a real server over real HTTP, read back with
prometheus-client's own parser, as runs complete, fail, retry, are cancelled and rescued."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

import conveyor.metrics
from conveyor import (
    JobStatus,
    MissingExtra,
    Queue,
    Runtime,
    SQLiteStore,
    StoreBusy,
    ValidationError,
    check_cancelled,
    fail_job,
)
from conveyor.store import ClaimParams, NewJob, store_at

from ..conftest import conveyor_command, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"


class Work(Queue):
    """What a job does is in its payload: "ok", "fail" (for good), "flaky" (fails its
    first attempt, then completes), "block" (until cancelled)."""

    name = "work"
    worker_count = 4
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 0.0)

    async def handle_item(self, item: str) -> str:
        if item == "fail":
            fail_job("no")
        if item == "flaky" and conveyor.current_job().attempts == 1:
            raise RuntimeError("first attempt fails")
        if item == "block":
            while True:
                check_cancelled()
                await anyio.sleep(0.01)
        return item


class Other(Queue):
    name = "other"

    async def handle_item(self, item: Any) -> None:
        return None


def scrape(rt: Runtime, path: str = "/metrics", headers: dict[str, str] | None = None) -> Any:
    url = rt.server_url.replace("ws://", "http://") + path

    def fetch() -> tuple[int, str, str]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    return anyio.to_thread.run_sync(fetch)


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(found: dict[str, Metric], name: str, **labels: str) -> float:
    """The one sample named ``name`` (a family's or its _total/_count/_bucket) whose
    labels include ``labels``."""
    family = found[re.sub(r"_(total|count|sum|bucket)$", "", name)]
    matches = [
        s.value for s in family.samples if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(matches) == 1, (name, labels, family.samples)
    return matches[0]


async def metrics_of(rt: Runtime) -> dict[str, Metric]:
    status, content_type, body = await scrape(rt)
    assert status == 200, body
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return families(body)


@pytest.fixture
async def rt(location: str) -> AsyncIterator[Runtime]:
    async with Runtime(
        location, queues=[Work(), Other()], serve=("127.0.0.1", 0), shutdown_grace=0
    ) as runtime:
        yield runtime


@pytest.fixture
def fresh_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scrape reads the store (the fleet's cache is tested on its own below)."""
    monkeypatch.setattr(conveyor.metrics, "FLEET_READ_INTERVAL", 0.0)


@pytest.mark.usefixtures("fresh_reads")
async def test_counters_and_histograms_follow_the_runs(rt: Runtime) -> None:
    with anyio.fail_after(30):
        before = await metrics_of(rt)
        assert value(before, "conveyor_jobs", queue="work", status="completed") == 0
        assert not before["conveyor_runs_started"].samples  # no queue ran anything yet

        for job in await rt.enqueue_many("work", ["ok", "ok", "ok", "flaky", "fail"]):
            await rt.wait(job.id)
        blocked = await rt.enqueue("work", "block")
        async with rt.events(job_id=blocked.id) as stream:
            async for event in stream:
                if event.status is JobStatus.RUNNING:
                    break
        await anyio.sleep(0.3)  # the run's duration, measured below (no state to wait for)
        await rt.cancel(blocked.id)
        assert (await rt.wait(blocked.id)).status is JobStatus.CANCELLED
        found = await metrics_of(rt)

    def runs(what: str) -> float:
        return value(found, f"conveyor_runs_{what}_total", queue="work")

    # 3 ok, flaky twice, fail once, block once.
    assert runs("started") == 7
    assert runs("completed") == 4  # the 3 ok and the flaky job's second attempt
    assert runs("failed") == 1
    assert runs("retried") == 1
    assert runs("cancelled") == 1
    assert runs("rescued") == 0
    for histogram in ("conveyor_run_duration_seconds", "conveyor_queue_wait_seconds"):
        assert found[histogram].type == "histogram"
        assert value(found, f"{histogram}_count", queue="work") == 7
        assert value(found, f"{histogram}_bucket", queue="work", le="+Inf") == 7
        buckets = [
            s.value
            for s in found[histogram].samples
            if s.name.endswith("_bucket") and s.labels["queue"] == "work"
        ]
        assert buckets == sorted(buckets)  # cumulative
    # The cancelled run blocked for 0.3 s until it was cancelled.
    assert value(found, "conveyor_run_duration_seconds_sum", queue="work") >= 0.3
    assert value(found, "conveyor_run_duration_seconds_bucket", queue="work", le="0.25") <= 6
    # And none, nor any wait, took anything like 10 s.
    for histogram in ("conveyor_run_duration_seconds", "conveyor_queue_wait_seconds"):
        assert value(found, f"{histogram}_bucket", queue="work", le="10.0") == 7
        assert value(found, f"{histogram}_sum", queue="work") < 10
    # Nothing ran on "other": its jobs gauge is there (all zeros), no run of it counted.
    assert value(found, "conveyor_jobs", queue="other", status="queued") == 0
    assert not [s for s in found["conveyor_runs_started"].samples if s.labels["queue"] == "other"]
    statuses = {
        s.labels["status"]: s.value
        for s in found["conveyor_jobs"].samples
        if s.labels["queue"] == "work"
    }
    assert statuses == {s.value: 0 for s in JobStatus} | {
        "completed": 4,
        "failed": 1,
        "cancelled": 1,
    }
    assert value(found, "conveyor_queue_paused", queue="work") == 0
    assert value(found, "conveyor_workers", state="live") == 1
    assert value(found, "conveyor_workers", state="lost") == 0


class InTransaction(Queue):
    name = "ledger"

    async def handle_item(self, item: Any) -> int:
        async with conveyor.transaction() as conn:
            return int(await conn.fetchval("SELECT 1"))


async def test_a_completion_committed_with_the_handlers_transaction_counts_once(
    pg_url: str,
) -> None:
    """On PostgreSQL a handler's conveyor.transaction() commits with its completion: the
    outcome is written there, not by the finisher, and is counted there."""
    async with Runtime(pg_url, queues=[InTransaction()], serve=("127.0.0.1", 0)) as rt:
        for job in await rt.enqueue_many("ledger", [1, 2]):
            assert (await rt.wait(job.id, timeout=10)).status is JobStatus.COMPLETED
        found = await metrics_of(rt)
    assert value(found, "conveyor_runs_started_total", queue="ledger") == 2
    assert value(found, "conveyor_runs_completed_total", queue="ledger") == 2


async def test_queue_wait_counts_from_enqueue_to_start(db_path: Path) -> None:
    """A job enqueued while its queue is paused waits at least until it is resumed."""
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0)) as rt:
        await rt.pause("work")
        job = await rt.enqueue("work", "ok")
        with anyio.fail_after(10):
            await anyio.sleep(0.3)  # the wait being measured (no state to wait for)
            await rt.resume("work")
            await rt.wait(job.id)
            found = await metrics_of(rt)
    assert value(found, "conveyor_queue_wait_seconds_count", queue="work") == 1
    assert value(found, "conveyor_queue_wait_seconds_sum", queue="work") >= 0.3
    assert value(found, "conveyor_queue_wait_seconds_bucket", queue="work", le="0.25") == 0
    assert value(found, "conveyor_queue_wait_seconds_bucket", queue="work", le="2.5") == 1


async def test_runs_of_a_dead_worker_are_counted_as_rescued(db_path: Path) -> None:
    # A real process that is gone: its pid, once reaped, answers no kill(pid, 0).
    gone = (
        (await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"]))
        .stdout.decode()
        .strip()
    )
    side = store_at(db_path)
    await side.open("side")
    try:
        now = time.time()
        await side.writes.jobs_insert(
            [
                NewJob(
                    id=f"lost{i}",
                    queue="work",
                    status=JobStatus.QUEUED,
                    payload=b'"ok"',
                    created_at=now,
                )
                for i in range(3)
            ]
        )
        claim = ClaimParams(
            queue="work",
            limit=3,
            owner=f"{socket.gethostname()}/{gone}/dead",
            token="t",
            now=now,
            lease_expires_at=now + 3600,
        )
        assert len((await side.writes.jobs_claim(claim))[0]) == 3
    finally:
        await side.close()
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0)) as rt:  # rescues
        with anyio.fail_after(20):
            for i in range(3):
                assert (await rt.wait(f"lost{i}")).status is JobStatus.COMPLETED
            found = await metrics_of(rt)
    assert value(found, "conveyor_runs_rescued_total", queue="work") == 3
    assert value(found, "conveyor_runs_started_total", queue="work") == 3
    assert value(found, "conveyor_runs_completed_total", queue="work") == 3


async def test_store_errors_are_counted_by_kind(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db", busy_timeout=0.05)
    async with Runtime(store, queues=[Work()], serve=("127.0.0.1", 0)) as rt:
        found = await metrics_of(rt)
        assert not found["conveyor_store_errors"].samples
        holder = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
            with anyio.fail_after(10), pytest.raises(StoreBusy):
                await rt.enqueue("work", "ok")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        found = await metrics_of(rt)
    assert value(found, "conveyor_store_errors_total", kind="StoreBusy") >= 1
    kinds = {s.labels["kind"] for s in found["conveyor_store_errors"].samples}
    assert kinds <= {"StoreBusy", "StoreUnavailable", "StoreError"}


async def test_websocket_clients_are_counted_while_connected(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0)) as rt:

        async def clients() -> float:
            return value(await metrics_of(rt), "conveyor_websocket_clients")

        assert await clients() == 0
        with anyio.fail_after(10):
            async with connect(rt.server_url) as first, connect(rt.server_url):
                await wait_until(lambda: rt.stats.websocket_clients == 2)
                assert await clients() == 2
                await first.close()
                await wait_until(lambda: rt.stats.websocket_clients == 1)
                assert await clients() == 1
            await wait_until(lambda: rt.stats.websocket_clients == 0)
            assert await clients() == 0


async def test_the_token_applies_to_metrics(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0), token="s3cret") as rt:
        status, _, body = await scrape(rt)
        assert status == 401, body
        status, _, _ = await scrape(rt, headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, body = await scrape(rt, headers={"Authorization": "Bearer s3cret"})
        assert status == 200
        assert "conveyor_jobs" in families(body)
        status, _, _ = await scrape(rt, "/metrics?token=s3cret")
        assert status == 200


async def test_the_fleet_is_read_at_most_once_per_interval(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0), workers=False) as rt:
        monkeypatch.setattr(conveyor.metrics, "FLEET_READ_INTERVAL", 3600.0)
        first = await metrics_of(rt)
        await rt.enqueue("work", "ok")
        cached = await metrics_of(rt)
        monkeypatch.setattr(conveyor.metrics, "FLEET_READ_INTERVAL", 0.0)
        fresh = await metrics_of(rt)
    assert value(first, "conveyor_jobs", queue="work", status="queued") == 0
    assert value(cached, "conveyor_jobs", queue="work", status="queued") == 0  # reused
    assert value(fresh, "conveyor_jobs", queue="work", status="queued") == 1


@pytest.mark.usefixtures("fresh_reads")
async def test_two_runtimes_in_one_process_each_export_their_own(tmp_path: Path) -> None:
    async with (
        Runtime(tmp_path / "a.db", queues=[Work()], serve=("127.0.0.1", 0)) as a,
        Runtime(tmp_path / "b.db", queues=[Work()], serve=("127.0.0.1", 0)) as b,
    ):
        with anyio.fail_after(10):
            for job in await a.enqueue_many("work", ["ok", "ok"]):
                await a.wait(job.id)
            await b.wait((await b.enqueue("work", "ok")).id)
            body_a, _ = await conveyor.metrics.render(a)
            body_b, _ = await conveyor.metrics.render(b)
    assert value(families(body_a.decode()), "conveyor_runs_completed_total", queue="work") == 2
    assert value(families(body_b.decode()), "conveyor_runs_completed_total", queue="work") == 1


async def test_metrics_false_counts_no_runs_but_serves_the_fleet(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0), metrics=False) as rt:
        await rt.wait((await rt.enqueue("work", "ok")).id, timeout=10)
        found = await metrics_of(rt)
    assert rt.stats.runs is None
    assert "conveyor_runs_started" not in found
    assert "conveyor_run_duration_seconds" not in found
    assert value(found, "conveyor_jobs", queue="work", status="completed") == 1


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats(), st.lists(st.none())))
def test_metrics_takes_only_a_bool(value: object) -> None:
    with pytest.raises(ValidationError, match="metrics"):
        Runtime("unused.db", metrics=value)  # type: ignore[arg-type]


accept_headers = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            [
                "application/openmetrics-text",
                "text/plain",
                "*/*",
                "version=1.0.0",
                "version=0.0.1",
                "version=a.b",
                "version=",
                "version=9",
                "escaping=allow-utf-8",
                "escaping=dots",
                "escaping=values",
                "escaping=nonsense",
                "q=0.5",
                ";",
                ",",
                "=",
            ]
        ),
        max_size=8,
    ).map(";".join),
)


async def test_any_accept_header_gets_a_parseable_exposition(db_path: Path) -> None:
    """Whatever Accept a scraper sends (a header: any text), the answer is metrics in
    the format its Content-Type names, as prometheus-client's parsers read them."""
    async with Runtime(db_path, queues=[Work()], serve=("127.0.0.1", 0)) as rt:
        await rt.wait((await rt.enqueue("work", "ok")).id, timeout=10)
        portal_calls: list[tuple[str, str]] = []

        def check(accept: str) -> None:
            body, content_type = anyio.from_thread.run(conveyor.metrics.render, rt, accept)
            text = body.decode()
            if content_type.startswith("application/openmetrics-text"):
                names = {f.name for f in openmetrics_families(text)}
            else:
                assert content_type.startswith("text/plain")
                names = {f.name for f in text_string_to_metric_families(text)}
            assert {"conveyor_jobs", "conveyor_runs_completed"} <= names
            portal_calls.append((accept, content_type))

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(accept_headers)
        @example("text/plain;version=10;escaping=dots")  # found by CI: names kept as they are
        @example("application/openmetrics-text;version=100.;escaping=dots")
        def fuzz(accept: str) -> None:
            check(accept)

        await anyio.to_thread.run_sync(fuzz)
        # And through the server, for headers HTTP can carry.
        for accept, kind in (
            ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text"),
            ("text/plain;version=a.b", "text/plain; version=0.0.4"),
        ):
            status, content_type, body = await scrape(rt, headers={"Accept": accept})
            assert status == 200
            assert content_type.startswith(kind)
            assert "conveyor_jobs" in body
        with pytest.raises(ValidationError, match="accept"):
            await conveyor.metrics.render(rt, 3)  # type: ignore[arg-type]
    assert any(c.startswith("application/openmetrics-text") for _, c in portal_calls)


def test_without_prometheus_client_metrics_say_what_to_install(tmp_path: Path) -> None:
    """prometheus-client is installed here (dev extra), so its absence is staged: a None
    entry in sys.modules makes importing it fail, as it would without the extra."""
    code = f"""
import sys, json, urllib.request, urllib.error
sys.modules["prometheus_client"] = None
import anyio
import conveyor, conveyor.metrics
from conveyor import MissingExtra, Queue, Runtime

class Work(Queue):
    name = "work"
    async def handle_item(self, item):
        return item

async def main():
    async with Runtime({str(tmp_path / "jobs.db")!r}, queues=[Work()],
                       serve=("127.0.0.1", 0)) as rt:
        job = await rt.enqueue("work", 1)
        assert (await rt.wait(job.id, timeout=10)).status == "completed"
        try:
            await conveyor.metrics.render(rt)
        except MissingExtra as exc:
            print("render:", exc)
        url = rt.server_url.replace("ws://", "http://")
        def get(path):
            try:
                with urllib.request.urlopen(url + path, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()
        for path in ("/metrics", "/healthz"):
            print(path, *await anyio.to_thread.run_sync(get, path))
    print("loaded:", "prometheus_client" in {{m.split(".")[0] for m in sys.modules
                                            if sys.modules[m] is not None}})

anyio.run(main)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("render: Prometheus metrics need prometheus-client")
    assert "pip install 'conveyor[metrics]'" in lines[0]
    assert lines[1].startswith("/metrics 501 ")
    assert "pip install 'conveyor[metrics]'" in lines[1]
    assert '"error":"not_installed"' in lines[1]
    assert lines[2] == '/healthz 200 {"status":"ok"}'
    assert lines[3] == "loaded: False"
    assert issubclass(MissingExtra, ImportError)


async def test_serve_exports_the_fleet_read_from_the_database(location: str) -> None:
    """conveyor serve runs no job: its gauges are the store's (every process's jobs and
    workers), and it counts no run."""
    async with Runtime(location, queues=[Work()], shutdown_grace=0) as worker:
        for job in await worker.enqueue_many("work", ["ok", "fail"]):
            await worker.wait(job.id, timeout=10)
        held = await worker.enqueue("work", "block")
        async with conveyor_command("serve", "--db", location, "--port", "0") as cmd:
            with anyio.fail_after(30):
                line = await cmd.line(lambda line: "on http://" in line)
            page = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            assert page, line

            def get() -> str:
                with urllib.request.urlopen(page.group(1) + "/metrics", timeout=10) as r:
                    return r.read().decode()

            async def blocked_runs() -> bool:
                found = families(await anyio.to_thread.run_sync(get))
                return value(found, "conveyor_jobs", queue="work", status="running") == 1

            with anyio.fail_after(20):
                await wait_until(blocked_runs, interval=0.2)
            found = families(await anyio.to_thread.run_sync(get))
        await worker.cancel(held.id)
    assert value(found, "conveyor_jobs", queue="work", status="completed") == 1
    assert value(found, "conveyor_jobs", queue="work", status="failed") == 1
    assert value(found, "conveyor_workers", state="live") == 1  # the worker runtime here
    assert "conveyor_runs_started" not in found or not found["conveyor_runs_started"].samples


def test_every_exported_metric_is_documented_and_named_by_the_conventions() -> None:
    """docs/metrics.md's table names each metric with its type; the exporter's families
    are exactly those, counters end in _total, and times are in seconds."""
    from conveyor._prometheus import Fleet, RuntimeCollector
    from conveyor._stats import RunStats, RuntimeStats

    stats = RuntimeStats(RunStats(), {"StoreBusy": 1})
    stats.runs.ended("q", 0.1)  # type: ignore[union-attr]
    collector = RuntimeCollector(stats)
    collector.fleet = Fleet(
        jobs={"q": {JobStatus.QUEUED: 1}}, paused={"q": False}, workers_live=1, workers_lost=0
    )
    exported = {}
    for family in collector.collect():
        suffix = "_total" if family.type == "counter" else ""
        exported[family.name + suffix] = family.type
    documented = dict(re.findall(r"^\| `(conveyor_\w+)` \| (\w+) \|", DOCS.read_text(), re.M))
    assert documented == exported
    for name, kind in exported.items():
        assert re.fullmatch(r"conveyor_[a-z_]+", name)
        assert name.endswith("_total") == (kind == "counter")
        if kind == "histogram":
            assert name.endswith("_seconds")


def test_histogram_buckets_are_cumulative_and_include_their_bound() -> None:
    """Prometheus's ``le``: a value equal to a bound is in that bound's bucket."""
    from conveyor._prometheus import RuntimeCollector
    from conveyor._stats import RunStats, RuntimeStats

    runs = RunStats()
    for seconds in (0.005, 0.0051, 3600.0, 7200.0):
        runs.ended("q", seconds)
    collector = RuntimeCollector(RuntimeStats(runs, {}))
    (duration,) = [f for f in collector.collect() if f.name == "conveyor_run_duration_seconds"]
    buckets = {s.labels["le"]: s.value for s in duration.samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1
    assert buckets["0.01"] == 2
    assert buckets["1800.0"] == 2
    assert buckets["3600.0"] == 3
    assert buckets["+Inf"] == 4
    (total,) = [s.value for s in duration.samples if s.name.endswith("_sum")]
    assert total == pytest.approx(0.005 + 0.0051 + 3600 + 7200)
