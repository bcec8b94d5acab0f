"""Durable throughput and latency of conveyor, next to peer job queues, in one sitting.

    python benchmarks/throughput.py [--jobs N] [--runs R] [--scenarios a,b,...]
                                    [--peers huey,arq,saq,taskiq,procrastinate,pgqueuer,bullmq]
                                    [--loop asyncio,uvloop] [--store sqlite|postgres]
                                    [--json PATH] [--markdown PATH] [--metrics] [--tracing]

Each scenario runs R times, each time in a fresh process on a fresh database file (or,
with --store postgres, a fresh schema of $CONVEYOR_BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test); the runs of conveyor and of the peers take
turns, and the medians are printed (the machine is shared and noisy: single runs
mislead), as a Markdown table, then issue 16's bars as this run measured them.
Scenarios (conveyor's are in _scenarios.py, its baselines in _baselines.py):

{scenarios}

--loop asyncio,uvloop runs each conveyor scenario under each event loop named (uvloop:
anyio.run(..., backend_options={{"use_uvloop": True}}); `pip install uvloop`, which the
dev and bench extras have). Peak RSS is the scenario process's maximum resident set
(the Redis or PostgreSQL server's memory is not counted, for anyone).

Peers (--peers; benchmarks/peers/, each in its own virtualenv or npm folder made on first
use) run each scenario they have the feature for, or those listed after a colon
(procrastinate:e2e), with the same --jobs: huey (SQLite, fsync), arq, saq, taskiq and
BullMQ (Node 20, from npm; all four on Redis, which keeps nothing on disk here),
procrastinate and pgqueuer (PostgreSQL on 127.0.0.1, a fresh database per run).

--metrics runs only e2e, R rounds of three modes, the order rotated each round: metrics
off (Runtime(metrics=False): no run counted), on (counted, never scraped), and on and
scraped (conveyor.metrics.render every 0.25 s, 60 times Prometheus's default rate). It
prints their medians and the median of each round's ratio to "off" with a 95% bootstrap
interval (a cost is measurable when the interval leaves out 1), then the engine's
counting alone, timed per job. --tracing does the same with three modes: OpenTelemetry
absent (blocked before conveyor is imported), the API alone (no SDK: non-recording
spans), and the SDK recording every span (exported to nowhere), against "absent".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import _peers
from _children import PG_URL, median, rates, run_child
from _overhead import fmt, metrics_table, tracing_table
from _report import BASELINES, bars, bars_text, table, write_markdown
from _scenarios import CONCURRENCY, E2E_WORKERS, IDLE_JOBS, ONE_BY_ONE

SCENARIOS = {
    "e2e": f"N no-op jobs enqueued (enqueue_many, 1,000 a call) while workers run"
    f" (worker_count {E2E_WORKERS}), until every completion is committed; peers: 50"
    " producers each awaiting one enqueue at a time, at each peer's own concurrency",
    "store-e2e": "the ceiling under e2e: the same N jobs through conveyor's store alone,"
    " inserted, claimed and finished 1,000 per transaction (no engine, handlers, events)",
    "process": f"N no-op jobs enqueued first (workers off), then a Runtime with workers"
    f" (worker_count {CONCURRENCY}) timed from its start until every completion is"
    f" committed; peers: concurrency {CONCURRENCY}, timed from their worker's start",
    "enqueue-1by1": f"enqueue awaited one at a time, no workers (at most {ONE_BY_ONE:,} jobs)",
    "raw-1by1": "the baseline of enqueue-1by1: raw sqlite3, WAL, synchronous=FULL, conveyor's"
    " schema, one job row and its history row per committed transaction (SQLite only)",
    "enqueue-conc": "50 concurrent producers awaiting enqueue (group commit)",
    "enqueue-bulk": "enqueue_many in chunks of 1,000",
    "latency": f"enqueue -> handler start, one job at a time on an idle runtime (at most"
    f" {IDLE_JOBS:,} jobs); BullMQ: the same, its producer and worker in one process",
    "sleep10": f"as e2e, each handler awaiting a 10 ms sleep: concurrency-bound, at"
    f" concurrency {CONCURRENCY} for conveyor and every peer (at best"
    f" {CONCURRENCY * 100:,} jobs/s)",
    "sync": f"as e2e, the handler a plain def that conveyor runs in a worker thread (at"
    f" most {CONCURRENCY} at once); peers: their own thread pools, as noted",
    "progress10": "as e2e, each job reporting progress ten times (conveyor's report_progress:"
    " broadcast at once, written coalesced; saq's job.update, taskiq's ProgressTracker,"
    " BullMQ's job.updateProgress: each a Redis write)",
}
LOOPLESS = ("raw-1by1",)  # no event loop: run once, whatever --loop says
SQLITE_ONLY = ("raw-1by1",)


def _notes(store: str, peers: dict[str, tuple[str, ...]], scenarios: list[str]) -> list[str]:
    notes = [
        "conveyor on SQLite commits with synchronous=FULL (an fsync per commit) and keeps"
        " every job, its result and its history rows (queued, running, completed)"
        if store == "sqlite"
        else "conveyor on PostgreSQL: synchronous_commit on, every job and its history kept",
        "conveyor counts a job once its completion is committed (its event seen); the"
        " Python peers once their handler ran it, BullMQ once its worker wrote the completion",
    ]
    if {"arq", "saq", "taskiq", "bullmq"} & set(peers):
        notes.append(f"{_peers.redis_persistence()} (arq, saq, taskiq, BullMQ)")
    if "bullmq" in peers:
        notes.append("BullMQ keeps completed jobs (its default), in Redis's memory")
    if "huey" in peers:
        notes.append("huey: SQLite with fsync=True, results kept")
    if {"procrastinate", "pgqueuer"} & set(peers):
        notes.append("procrastinate, pgqueuer: PostgreSQL on loopback, synchronous_commit on")
    notes += [why for scenario, why in _peers.LACKS.items() if peers and scenario in scenarios]
    return notes


def _run_scenario(
    name: str, args: argparse.Namespace, peers: dict[str, tuple[str, ...]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """This scenario's medians: by conveyor's loop, and by peer (each with its label)."""
    loops = ["asyncio"] if name in LOOPLESS else args.loop.split(",")
    runners = {f"conveyor {loop}": loop for loop in loops}
    runners |= {peer: "" for peer, scenarios in peers.items() if name in scenarios}
    runs: dict[str, list[dict[str, Any]]] = {who: [] for who in runners}
    for _ in range(args.runs):  # in turn, so drift in the machine's load falls on all
        for who, loop in runners.items():
            if loop:
                runs[who].append(run_child(name, args.jobs, args.store, loop=loop))
            elif (figures := _peers.run(who, name, args.jobs, CONCURRENCY)) is not None:
                runs[who].append(figures)
    ours: dict[str, dict[str, Any]] = {}
    theirs: dict[str, dict[str, Any]] = {}
    for who, loop in runners.items():
        if not runs[who]:
            continue
        figures = median(runs[who])
        if "jobs_per_s" in figures:
            figures["runs"] = sorted(round(r["jobs_per_s"]) for r in runs[who])
        (ours if loop else theirs)[loop or who] = figures
        spread = f"  (runs: {rates(runs[who])})" if "jobs_per_s" in figures else ""
        if loop:  # a baseline's row is not conveyor's: say what it is
            label = BASELINES.get(name, f"conveyor, {loop}")
        else:
            label = figures.get("label", who)
        shown = "  ".join(fmt(k, v) for k, v in figures.items() if k not in ("label", "runs"))
        print(f"  {name:<13} {label:<40} {shown}{spread}", flush=True)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.format(
            scenarios="\n".join(f"  {k:<13}{v}" for k, v in SCENARIOS.items())
        ),
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--peers",
        default="",
        help=f"comma-separated: {','.join(_peers.FEATURES)}, each optionally with the"
        " scenarios to run (procrastinate:e2e+process); with --processes: graphile",
    )
    parser.add_argument("--loop", default="asyncio", help="asyncio, uvloop or asyncio,uvloop")
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
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="only e2e, with the metrics off and on (scraped), alternating: the overhead",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="only e2e, with OpenTelemetry absent, API only and SDK, alternating: the overhead",
    )
    args = parser.parse_args()
    if args.processes:
        if args.store != "postgres":
            raise SystemExit("--processes needs --store postgres")
        from fleet import fleet_table, latency_line, peer_table

        fleet_table([int(k) for k in args.processes.split(",")], args.jobs, args.runs)
        latency_line(args.runs)
        peer_table([p for p in args.peers.split(",") if p], args.jobs, args.runs)
        return
    for loop in args.loop.split(","):
        if loop not in ("asyncio", "uvloop"):
            raise SystemExit(f"--loop: asyncio or uvloop, not {loop!r}")

    where = "SQLite (synchronous=FULL)" if args.store == "sqlite" else f"PostgreSQL ({PG_URL})"
    title = f"conveyor on {where}, {args.jobs:,} jobs, median of {args.runs} runs"
    print(title)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.metrics:
        metrics_table(args.jobs, args.runs, args.store)
        return
    if args.tracing:
        tracing_table(args.jobs, args.runs, args.store)
        return
    peers = _peers.parse(args.peers)
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in scenarios:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if args.store != "sqlite":
        scenarios = [s for s in scenarios if s not in SQLITE_ONLY]
    conveyor: dict[str, dict[str, Any]] = {}
    loops: dict[str, dict[str, Any]] = {}
    peer_results: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        ours, theirs = _run_scenario(name, args, peers)
        for loop, figures in ours.items():
            (conveyor if loop == "asyncio" else loops.setdefault(loop, {}))[name] = figures
        for figures in theirs.values():
            label = figures.pop("label")
            entry = peer_results.setdefault(label, {})
            if name == "e2e":
                entry.update(figures)
            else:
                entry.setdefault("scenarios", {})[name] = figures
    command = " ".join(["python benchmarks/throughput.py", *sys.argv[1:]])
    results: dict[str, Any] = {
        "store": args.store,
        "source": f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {command}",
        "title": title,
        "conveyor": conveyor,
        "loops": loops,
        "peers": peer_results,
        "notes": _notes(args.store, peers, scenarios),
    }
    results["bars"] = bars(results)
    text = table(results, scenarios, SCENARIOS) + "\n" + bars_text(results["bars"])
    print("\n" + text)
    if args.markdown:
        write_markdown(args.markdown, text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
