"""Shared by the peer benchmark scripts (each runs in its own virtualenv).

Each script takes ``--scenario S --jobs N --concurrency C`` and prints one JSON line.
Scenarios (the ones a peer lacks the feature for, it refuses; throughput.py knows which):
  e2e         PRODUCERS concurrent producers enqueue one job per call while the worker
              runs (at the peer's own e2e concurrency, as its script says)
  process     the N jobs enqueued first, then the worker starts (concurrency C)
  sleep10     as e2e, each handler sleeping 10 ms (concurrency C)
  sync        as e2e, the handler a plain def run in the peer's threads
  progress10  as e2e, each handler reporting progress ten times
The clock stops when the handlers have run every job (not when the peer has written
their completions: a little in the peer's favour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

PRODUCERS = 50  # concurrent producers, each awaiting one enqueue at a time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    label: str, jobs: int, elapsed: float, latencies: list[float] | None, note: str = ""
) -> None:
    """Print the figures; ``latencies`` None where they mean nothing (process)."""
    figures: dict[str, Any] = {"label": label, "jobs_per_s": jobs / elapsed}
    if latencies is not None:
        figures["p50_ms"] = percentile(latencies, 0.5) * 1000
        figures["p99_ms"] = percentile(latencies, 0.99) * 1000
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if note:
        figures["note"] = note
    print(json.dumps(figures))


async def fresh_postgres_database(name: str) -> str:
    """Drop and create database ``name`` on the local server; its DSN. Needs asyncpg."""
    import asyncpg  # each Postgres peer's venv has it

    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql://postgres@127.0.0.1/{name}"


class Args(argparse.Namespace):
    scenario: str
    jobs: int
    concurrency: int


def arguments(*scenarios: str) -> Args:
    """--scenario (one of ``scenarios``), --jobs (rounded down to a multiple of
    PRODUCERS) and --concurrency."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=scenarios, default="e2e")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args(namespace=Args())
    args.jobs = args.jobs // PRODUCERS * PRODUCERS
    return args


class Tally:
    """What each peer's task does: record its enqueue -> start latency (``ran``, from the
    event loop or a worker thread); ``done`` is set when all ``jobs`` have run."""

    def __init__(self, args: Args) -> None:
        self.jobs = args.jobs
        self.scenario = args.scenario
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def ran(self, enqueued_at: float) -> None:
        self.latencies.append(time.perf_counter() - enqueued_at)  # atomic under the GIL
        if len(self.latencies) == self.jobs:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self.done.set)

    async def run(
        self, enqueue_one: Callable[[], Awaitable[Any]], start_worker: Callable[[], Any]
    ) -> float:
        """The scenario's timed part: seconds until every job has run."""
        self.loop = asyncio.get_running_loop()
        if self.scenario == "process":
            await self.produce(enqueue_one)
            started = time.perf_counter()
            start_worker()
        else:
            start_worker()
            started = time.perf_counter()
            await self.produce(enqueue_one)
        await asyncio.wait_for(self.done.wait(), 900)
        return time.perf_counter() - started

    async def produce(self, enqueue_one: Callable[[], Awaitable[Any]]) -> None:
        """Enqueue all the jobs from PRODUCERS concurrent producers."""

        async def producer() -> None:
            for _ in range(self.jobs // PRODUCERS):
                await enqueue_one()

        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))

    def report(self, label: str, elapsed: float, note: str = "") -> None:
        latencies = None if self.scenario == "process" else self.latencies
        report(label, self.jobs, elapsed, latencies, note)
