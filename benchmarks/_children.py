"""Runs one conveyor scenario (_scenarios.py) in a fresh process on a fresh database: a
new SQLite file in a temporary folder, or with store "postgres" a new schema of
$CONVEYOR_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test), dropped
after."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).parent
PG_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def run_child(
    name: str,
    jobs: int,
    store: str,
    *,
    loop: str = "asyncio",
    metrics: str = "on",
    tracing: str = "api",
) -> dict[str, Any]:
    """The figures of one run of scenario ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        schema = f"bench_{os.getpid()}_{time.monotonic_ns()}"
        db = f"{PG_URL}?schema={schema}" if store == "postgres" else f"{tmp}/b.db"
        try:
            result = subprocess.run(
                [
                    *(sys.executable, str(HERE / "_scenarios.py"), name, "--jobs", str(jobs)),
                    *("--db", db, "--loop", loop, "--metrics", metrics, "--tracing", tracing),
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


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the runs; the rest as the first run has it."""
    return {
        key: statistics.median(r[key] for r in runs) if isinstance(value, int | float) else value
        for key, value in runs[0].items()
    }


def rates(runs: list[dict[str, Any]]) -> str:
    """Each run's jobs/s, in order: the spread behind a median."""
    return ", ".join(f"{r:,.0f}" for r in sorted(r["jobs_per_s"] for r in runs))
