"""Durable throughput and latency of conveyor, next to peer job queues.

    python benchmarks/throughput.py [--jobs N] [--runs R] [--peers huey,arq,saq,...]
                                    [--store sqlite|postgres] [--metrics] [--tracing]

Each scenario runs R times, each time in a fresh process on a fresh database file (or,
with --store postgres, a fresh schema of $CONVEYOR_BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test), and the median is printed (the machine is
shared and noisy: single runs mislead). Scenarios:

  e2e          N no-op jobs, enqueued in chunks while workers run, until every
               completion is committed (synchronous=FULL: durable), jobs/s
  store-e2e    the ceiling under e2e: the same N jobs through the store alone,
               inserted, claimed and finished in transactions of 1,000, one after the
               other (no engine, no handlers, no events), jobs/s
  enqueue-1by1 enqueue awaited one at a time, no workers, jobs/s
  enqueue-conc 50 concurrent producers awaiting enqueue (group commit), jobs/s
  enqueue-bulk enqueue_many in chunks of 1,000, jobs/s
  latency      enqueue -> handler start, one job at a time on an idle runtime, p50/p99
  latency-load the same measured for every job of the e2e run, p50/p99

--metrics runs only e2e, R times in each of three modes, in turn: metrics off
(Runtime(metrics=False): no run counted), on (counted, never scraped), and on and scraped
(conveyor.metrics.render every SCRAPE_EVERY seconds, 60 times Prometheus's default rate),
and prints their medians and ratios to "off", then the engine's counting alone, timed
per job: what collecting costs the hot path.

--tracing runs only e2e, R times in each of three modes, in turn: OpenTelemetry absent
(blocked before conveyor is imported, as where the otel extra is not installed), the API
alone (installed, no SDK: non-recording spans), and the SDK recording every span (a
TracerProvider whose batch processor hands them to an exporter that drops them), and
prints their medians and ratios to "absent": what tracing costs the hot path.

Peak RSS is the scenario process's maximum resident set. Peers run the same e2e scenario
(their latency is measured under that load, like latency-load) in their own virtualenvs
(benchmarks/peers/, made on first use), in the same run: huey (SQLite, fsync), arq, saq
and taskiq (Redis, which keeps nothing on disk here), procrastinate and pgqueuer
(PostgreSQL on 127.0.0.1, user postgres, a fresh database per run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).parent
SCENARIOS = ("e2e", "store-e2e", "enqueue-1by1", "enqueue-conc", "enqueue-bulk", "latency")
SCRAPE_EVERY = 0.25  # seconds between scrapes in e2e with --metrics, mode "scraped"
METRICS_MODES = ("off", "on", "scraped")
TRACING_MODES = ("absent", "api", "sdk")


def _set_up_tracing(mode: str) -> None:
    """In a child, before conveyor is imported: OpenTelemetry as --tracing's mode says."""
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


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _scenario(name: str, jobs: int, db: str, metrics: str = "on") -> dict[str, Any]:
    from conveyor import Event, JobStatus, Queue, Runtime
    from conveyor.metrics import render

    latencies: list[float] = []

    class Noop(Queue):
        name = "noop"
        worker_count = 200

        async def handle_item(self, item: dict[str, float]) -> None:
            latencies.append(time.perf_counter() - item["t"])

    if name == "e2e":
        scrapes = 0
        async with Runtime(db, queues=[Noop()], metrics=metrics != "off") as rt:
            done = 0
            finished = anyio.Event()

            async def scrape() -> None:
                nonlocal scrapes
                while not finished.is_set():
                    body, _ = await render(rt)
                    assert b"conveyor_runs_completed_total" in body
                    scrapes += 1
                    await anyio.sleep(SCRAPE_EVERY)

            async def count(stream: Any) -> None:
                nonlocal done
                event: Event
                async for event in stream:
                    if event.status is JobStatus.COMPLETED:
                        done += 1
                        if done == jobs:
                            finished.set()
                            return

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                tg.start_soon(count, rt.events(max_buffer=jobs * 4))
                if metrics == "scraped":
                    tg.start_soon(scrape)
                for start in range(0, jobs, 1000):
                    now = time.perf_counter()
                    n = min(1000, jobs - start)
                    await rt.enqueue_many("noop", [{"t": now}] * n)
                await finished.wait()
            elapsed = time.perf_counter() - started
        figures = {
            "jobs_per_s": jobs / elapsed,
            "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000,
        }
        return figures | ({"scrapes": scrapes} if metrics == "scraped" else {})

    if name == "store-e2e":
        return {"jobs_per_s": jobs / await _store_only(jobs, db)}

    if name == "latency":
        count = min(jobs, 1000)
        async with Runtime(db, queues=[Noop()]) as rt:
            for _ in range(count):
                job = await rt.enqueue("noop", {"t": time.perf_counter()})
                await rt.wait(job.id, timeout=30)
        return {
            "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000,
        }

    async with Runtime(db, queues=[Noop()], workers=False) as rt:
        started = time.perf_counter()
        if name == "enqueue-1by1":
            jobs = min(jobs, 5000)
            for _ in range(jobs):
                await rt.enqueue("noop", {"t": 0.0})
        elif name == "enqueue-conc":
            producers = 50

            async def produce() -> None:
                for _ in range(jobs // producers):
                    await rt.enqueue("noop", {"t": 0.0})

            async with anyio.create_task_group() as tg:
                for _ in range(producers):
                    tg.start_soon(produce)
            jobs = jobs // producers * producers
        elif name == "enqueue-bulk":
            for start in range(0, jobs, 1000):
                await rt.enqueue_many("noop", [{"t": 0.0}] * min(1000, jobs - start))
        else:
            raise SystemExit(f"unknown scenario {name}")
        elapsed = time.perf_counter() - started
    return {"jobs_per_s": jobs / elapsed}


async def _store_only(jobs: int, db: str) -> float:
    """Seconds to insert, claim and finish ``jobs`` jobs, 1,000 per transaction."""
    from conveyor import JobStatus
    from conveyor._ids import IdGenerator
    from conveyor._models import NO_PROGRESS
    from conveyor.store import ClaimParams, Finish, NewJob, store_at

    store = store_at(db)
    await store.open("bench")
    ids = IdGenerator()
    started = time.perf_counter()
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        now = time.time()
        await store.writes.jobs_insert(
            [
                NewJob(
                    id=ids.new(),
                    queue="noop",
                    status=JobStatus.QUEUED,
                    payload=b"{}",
                    created_at=now,
                )
                for _ in range(n)
            ]
        )
        claim = ClaimParams(
            queue="noop", limit=n, owner="bench", token="t", now=now, lease_expires_at=now + 30
        )
        claimed, _ = await store.writes.jobs_claim(claim)
        finishes = [
            Finish(job_id=job.id, token="t", status=JobStatus.COMPLETED, progress=NO_PROGRESS)
            for job in claimed
        ]
        await store.writes.jobs_finish(finishes, time.time())
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


PG_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def _run_child(
    name: str, jobs: int, store: str, metrics: str = "on", tracing: str = "api"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_{os.getpid()}_{time.monotonic_ns()}"
        db = f"{PG_URL}?schema={schema}" if store == "postgres" else f"{tmp}/b.db"
        try:
            result = subprocess.run(
                [
                    *(sys.executable, __file__, "--child", name, "--jobs", str(jobs)),
                    *("--db", db, "--child-metrics", metrics, "--child-tracing", tracing),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            if store == "postgres":
                anyio.run(_drop_schema, schema)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _peer(peer: str, jobs: int) -> dict[str, Any] | None:
    script = HERE / "peers" / f"{peer}_bench.py"
    python = HERE / ".peers" / peer / "bin" / "python"
    setup = HERE / "peers" / "setup.sh"
    if not python.exists():
        subprocess.run(["bash", str(setup), peer], check=True, timeout=600)
    result = subprocess.run(
        [str(python), str(script), "--jobs", str(jobs)], capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        print(f"  {peer}: failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--peers",
        default="",
        help="comma-separated: huey,arq,saq,taskiq,procrastinate,pgqueuer; with --processes:"
        " graphile",
    )
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--processes",
        help="with --store postgres: K worker processes (a list: 1,2,4) share the queue and"
        " process --jobs pre-enqueued jobs; jobs/s and lock waits (see fleet.py)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this results file, which benchmarks/plots.py draws",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="only e2e, with the metrics off and on (scraped), alternating: the overhead",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="only e2e, with OpenTelemetry absent, API only and SDK, alternating: the overhead",
    )
    parser.add_argument("--child-metrics", choices=METRICS_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--child-tracing", choices=TRACING_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        _set_up_tracing(args.child_tracing or "api")
        figures = anyio.run(_scenario, args.child, args.jobs, args.db, args.child_metrics)
        figures["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(figures))
        return

    if args.processes:
        if args.store != "postgres":
            raise SystemExit("--processes needs --store postgres")
        from fleet import fleet_table, latency_line, peer_table

        fleet_table([int(k) for k in args.processes.split(",")], args.jobs, args.runs)
        latency_line(args.runs)
        peer_table([p for p in args.peers.split(",") if p], args.jobs, args.runs)
        return

    where = "SQLite (synchronous=FULL)" if args.store == "sqlite" else f"PostgreSQL ({PG_URL})"
    print(f"conveyor on {where}, {args.jobs} jobs, median of {args.runs} runs")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.metrics:
        _metrics_table(args.jobs, args.runs, args.store)
        return
    if args.tracing:
        _tracing_table(args.jobs, args.runs, args.store)
        return
    table: dict[str, dict[str, Any]] = {}
    for name in args.scenarios.split(","):
        runs = [_run_child(name, args.jobs, args.store) for _ in range(args.runs)]
        table[name] = figures = _median(runs)
        spread = ""
        if "jobs_per_s" in figures:
            rates = sorted(r["jobs_per_s"] for r in runs)
            spread = f"  (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        print(f"  {name:<13} " + "  ".join(_fmt(k, v) for k, v in figures.items()) + spread)

    peers = [p for p in args.peers.split(",") if p]
    peer_table: dict[str, dict[str, Any]] = {}
    if peers:
        print("\npeers, same machine, same run (e2e and latency as above):")
        ours = table.get("e2e", {}).get("jobs_per_s")
        for peer in peers:
            peer_runs = [r for r in (_peer(peer, args.jobs) for _ in range(args.runs)) if r]
            if not peer_runs:
                continue
            figures = _median(peer_runs)
            ratio = f"  conveyor/peer e2e = {ours / figures['jobs_per_s']:.1f}x" if ours else ""
            label = figures.pop("label", peer) if isinstance(figures.get("label"), str) else peer
            print(f"  {label:<22} " + "  ".join(_fmt(k, v) for k, v in figures.items()) + ratio)
            peer_table[label] = figures
    if args.json:
        _write_results(args.json, args.store, table, peer_table)


def _write_results(
    path: Path, store: str, table: dict[str, Any], peers: dict[str, dict[str, Any]]
) -> None:
    """The run's medians as a results file (see benchmarks/plots.py), naming the run."""
    day = time.strftime("%Y-%m-%d")
    command = " ".join(["python benchmarks/throughput.py", *sys.argv[1:]])
    source = f"{day}, {os.cpu_count()} cores, {command}"
    results = {"store": store, "source": source, "conveyor": table, "peers": peers}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {path}")


def _metrics_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each metrics mode, in turn (so drift in the machine's load falls on all
    alike), and the ratios of the medians to "off"."""
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in METRICS_MODES}
    for _ in range(runs):
        for mode in by_mode:
            by_mode[mode].append(_run_child("e2e", jobs, store, mode))
    medians = {mode: _median(figures) for mode, figures in by_mode.items()}
    for mode, figures in medians.items():
        rates = sorted(r["jobs_per_s"] for r in by_mode[mode])
        label = f"e2e metrics {mode}" + (f" every {SCRAPE_EVERY}s" if mode == "scraped" else "")
        print(
            f"  {label:<36} "
            + "  ".join(_fmt(k, v) for k, v in figures.items())
            + f"  (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    for mode in METRICS_MODES[1:]:
        ratio = medians[mode]["jobs_per_s"] / medians["off"]["jobs_per_s"]
        print(f"  {mode} / off = {ratio:.3f} (jobs/s, medians)")
    per_job = _counting_cost()
    share = per_job * medians["off"]["jobs_per_s"]
    print(
        f"  counting alone: {per_job * 1e6:.2f} us per job (what the engine adds per run,"
        f" timed here), {share:.1%} of a job's time at the metrics-off rate"
    )


def _tracing_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each tracing mode, in turn, and the ratios of the medians to "absent"."""
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in TRACING_MODES}
    for _ in range(runs):
        for mode in by_mode:
            by_mode[mode].append(_run_child("e2e", jobs, store, tracing=mode))
    medians = {mode: _median(figures) for mode, figures in by_mode.items()}
    for mode, figures in medians.items():
        rates = sorted(r["jobs_per_s"] for r in by_mode[mode])
        print(
            f"  {'e2e tracing ' + mode:<36} "
            + "  ".join(_fmt(k, v) for k, v in figures.items())
            + f"  (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    for mode in TRACING_MODES[1:]:
        ratio = medians[mode]["jobs_per_s"] / medians["absent"]["jobs_per_s"]
        print(f"  {mode} / absent = {ratio:.3f} (jobs/s, medians)")


def _counting_cost() -> float:
    """Seconds per job of what the engine does for metrics on each run: the wait and
    the start counted, the duration observed, the outcome counted (in batches of 500,
    as the finisher writes them), and the two clock reads."""
    from datetime import UTC, datetime, timedelta

    from conveyor import JobStatus
    from conveyor._stats import RunStats
    from conveyor.store import Transition

    runs = RunStats()
    enqueued = datetime.now(UTC)
    started = enqueued + timedelta(milliseconds=3)
    batch = [
        Transition(seq=i, job_id=str(i), queue="noop", status=JobStatus.COMPLETED, at=0.0)
        for i in range(500)
    ]
    rounds = 200
    begin = time.perf_counter()
    for _ in range(rounds):
        for _ in batch:
            began = time.monotonic()
            runs.started("noop", (started - enqueued).total_seconds())
            runs.ended("noop", time.monotonic() - began)
        runs.finished(batch)
    return (time.perf_counter() - begin) / (rounds * len(batch))


def _fmt(key: str, value: Any) -> str:
    if key == "jobs_per_s":
        return f"{value:>9,.0f} jobs/s"
    if key.endswith("_ms"):
        return f"{key[:-3]} {value:.2f} ms"
    if key == "peak_rss_mb":
        return f"peak RSS {value:.0f} MB"
    return f"{key} {value}"


if __name__ == "__main__":
    main()
