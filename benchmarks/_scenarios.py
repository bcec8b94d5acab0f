"""conveyor's benchmark scenarios, each run by throughput.py in a fresh process of its own:

    python benchmarks/_scenarios.py SCENARIO --jobs N --db PATH_OR_URL
                                    [--loop asyncio|uvloop] [--metrics off|on|scraped]
                                    [--tracing absent|api|sdk]

prints one JSON line of figures (jobs_per_s, p50_ms, p99_ms, peak_rss_mb, as measured).
SCENARIOS in throughput.py says what each one is. The store-alone ceiling and the raw
sqlite3 baseline are in _baselines.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _baselines import raw_one_by_one, store_only

SCRAPE_EVERY = 0.25  # seconds between scrapes in e2e with --metrics, mode "scraped"
E2E_WORKERS = 200  # conveyor's worker_count in e2e, latency and the enqueue scenarios
CONCURRENCY = 100  # in process, sleep10, sync and progress10: conveyor's and every peer's
ENQUEUE_CHUNK = 1000  # jobs per enqueue_many call, in e2e and when jobs are pre-enqueued
ONE_BY_ONE = 5000  # at most this many jobs in enqueue-1by1 and raw-1by1 (one fsync each)
IDLE_JOBS = 1000  # at most this many jobs in latency (one at a time)
PRODUCERS = 50  # concurrent producers in enqueue-conc


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latencies(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def _queue(name: str, latencies: list[float]) -> Any:
    """The scenario's queue, "bench": its handler records enqueue -> start in
    ``latencies``, then does what the scenario says."""
    from conveyor import Queue

    class Bench(Queue):
        name = "bench"
        worker_count = E2E_WORKERS if name in ("e2e", "latency") else CONCURRENCY

        async def handle_item(self, item: dict[str, float]) -> None:
            latencies.append(time.perf_counter() - item["t"])
            if name == "sleep10":
                await anyio.sleep(0.01)
            elif name == "progress10":
                for step in range(1, 11):
                    self.report_progress(current=step, total=10)

    class SyncBench(Queue):  # a plain def: conveyor runs it in a worker thread
        name = "bench"
        worker_count = CONCURRENCY

        def handle_item(self, item: dict[str, float]) -> None:
            latencies.append(time.perf_counter() - item["t"])

    return SyncBench() if name == "sync" else Bench()


async def _scrape(rt: Any, scrapes: list[int]) -> None:
    """conveyor.metrics.render every SCRAPE_EVERY seconds, until cancelled."""
    from conveyor.metrics import render

    while True:
        body, _ = await render(rt)
        assert b"conveyor_runs_completed_total" in body
        scrapes.append(1)
        await anyio.sleep(SCRAPE_EVERY)


async def _until_completed(
    stream: Any, jobs: int, produce: Callable[[], Awaitable[None]] | None = None
) -> float:
    """Seconds from now until ``stream`` (of completions) has seen ``jobs`` events (each
    published once its completion is committed), while ``produce`` runs."""
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        if produce is not None:
            tg.start_soon(produce)
        done = 0
        async for _ in stream:
            done += 1
            if done == jobs:
                break
    return time.perf_counter() - started


async def _enqueue_chunks(rt: Any, jobs: int) -> None:
    for start in range(0, jobs, ENQUEUE_CHUNK):
        n = min(ENQUEUE_CHUNK, jobs - start)
        await rt.enqueue_many("bench", [{"t": time.perf_counter()}] * n)


async def scenario(name: str, jobs: int, db: str, metrics: str = "on") -> dict[str, Any]:
    """One scenario's figures (see throughput.py's SCENARIOS)."""
    from conveyor import JobStatus, Runtime

    latencies: list[float] = []
    queue = _queue(name, latencies)

    if name in ("e2e", "sleep10", "sync", "progress10"):
        scrapes: list[int] = []
        async with Runtime(db, queues=[queue], metrics=metrics != "off") as rt:
            if metrics == "scraped":
                # Once per process, before the clock starts: the first scrape imports
                # prometheus-client (about 25 ms here), a cost of starting, not of running.
                from conveyor.metrics import render

                await render(rt)
            async with anyio.create_task_group() as tg:
                if metrics == "scraped":
                    tg.start_soon(_scrape, rt, scrapes)
                completions = rt.events(statuses=[JobStatus.COMPLETED], max_buffer=jobs)
                elapsed = await _until_completed(
                    completions, jobs, lambda: _enqueue_chunks(rt, jobs)
                )
                tg.cancel_scope.cancel()
        figures = {"jobs_per_s": jobs / elapsed, **_latencies(latencies)}
        return figures | ({"scrapes": len(scrapes)} if metrics == "scraped" else {})

    if name == "process":
        async with Runtime(db, queues=[queue], workers=False) as rt:
            await _enqueue_chunks(rt, jobs)
        # The clock starts before the runtime does (its start-up is part of the time), and
        # the stream is the runtime's bus, subscribed before its workers start claiming.
        started = time.perf_counter()
        rt = Runtime(db, queues=[queue])
        completions = rt.bus.subscribe(
            queue=None, job_id=None, statuses=frozenset([JobStatus.COMPLETED]), max_buffer=jobs
        )
        async with rt:
            await _until_completed(completions, jobs)
            elapsed = time.perf_counter() - started
        return {"jobs_per_s": jobs / elapsed}

    if name == "store-e2e":
        return {"jobs_per_s": jobs / await store_only(jobs, db)}

    if name == "latency":
        count = min(jobs, IDLE_JOBS)
        async with Runtime(db, queues=[queue]) as rt:
            for _ in range(count):
                job = await rt.enqueue("bench", {"t": time.perf_counter()})
                await rt.wait(job.id, timeout=30)
        return _latencies(latencies)

    async with Runtime(db, queues=[queue], workers=False) as rt:
        started = time.perf_counter()
        if name == "enqueue-1by1":
            jobs = min(jobs, ONE_BY_ONE)
            for _ in range(jobs):
                await rt.enqueue("bench", {"t": 0.0})
        elif name == "enqueue-conc":

            async def produce() -> None:
                for _ in range(jobs // PRODUCERS):
                    await rt.enqueue("bench", {"t": 0.0})

            async with anyio.create_task_group() as tg:
                for _ in range(PRODUCERS):
                    tg.start_soon(produce)
            jobs = jobs // PRODUCERS * PRODUCERS
        elif name == "enqueue-bulk":
            for start in range(0, jobs, ENQUEUE_CHUNK):
                await rt.enqueue_many("bench", [{"t": 0.0}] * min(ENQUEUE_CHUNK, jobs - start))
        else:
            raise SystemExit(f"unknown scenario {name}")
        elapsed = time.perf_counter() - started
    return {"jobs_per_s": jobs / elapsed}


def _set_up_tracing(mode: str) -> None:
    """Before conveyor is imported: OpenTelemetry as throughput.py --tracing's mode says."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed
    elif mode == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Dropped(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        trace.set_tracer_provider(provider)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--metrics", choices=("off", "on", "scraped"), default="on")
    parser.add_argument("--tracing", choices=("absent", "api", "sdk"), default="api")
    args = parser.parse_args()
    _set_up_tracing(args.tracing)
    if args.scenario == "raw-1by1":  # no event loop at all
        jobs = min(args.jobs, ONE_BY_ONE)
        figures: dict[str, Any] = {"jobs_per_s": jobs / raw_one_by_one(jobs, args.db)}
    else:
        options = {"use_uvloop": True} if args.loop == "uvloop" else {}
        figures = anyio.run(
            scenario,
            args.scenario,
            args.jobs,
            args.db,
            args.metrics,
            backend="asyncio",
            backend_options=options,
        )
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
