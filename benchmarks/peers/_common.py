"""Shared by the peer benchmark scripts (each runs in its own virtualenv)."""

from __future__ import annotations

import json
import resource


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
