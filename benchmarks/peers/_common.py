"""Shared by the peer benchmark scripts (each runs in its own virtualenv)."""

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


def report(label: str, jobs: int, elapsed: float, latencies: list[float]) -> None:
    print(
        json.dumps(
            {
                "label": label,
                "jobs_per_s": jobs / elapsed,
                "p50_ms": percentile(latencies, 0.5) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


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


def jobs_argument() -> int:
    """The --jobs argument, rounded down to a multiple of PRODUCERS."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    return int(parser.parse_args().jobs) // PRODUCERS * PRODUCERS


class Tally:
    """What each peer's no-op task does: record its enqueue -> start latency; ``done`` is
    set when all ``jobs`` have run."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.latencies: list[float] = []
        self.done = asyncio.Event()

    def ran(self, enqueued_at: float) -> None:
        self.latencies.append(time.perf_counter() - enqueued_at)
        if len(self.latencies) == self.jobs:
            self.done.set()

    async def produce(self, enqueue_one: Callable[[], Awaitable[Any]]) -> None:
        """Enqueue all the jobs from PRODUCERS concurrent producers."""

        async def producer() -> None:
            for _ in range(self.jobs // PRODUCERS):
                await enqueue_one()

        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))

    def report(self, label: str, elapsed: float) -> None:
        report(label, self.jobs, elapsed, self.latencies)
