"""Endurance (``make soak`` only): an hour at 500 jobs/s with progress, retention on.
After warm-up the worker's RSS grows under 10 %, the WAL stays within its limit, the jobs
table stays within what retention keeps, and enqueue p99 stays under 50 ms in every
window, retention passes included. CONVEYOR_SOAK_SECONDS shortens or lengthens it."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from conveyor import Runtime

from ..conftest import wait_until
from .conftest import SOAK, Child
from .test_load import peak_rss_mb
from .worker import Soak

SECONDS = float(os.environ.get("CONVEYOR_SOAK_SECONDS", "3600"))
RATE = 500  # jobs per second
RETAIN = 60.0  # seconds completed jobs are kept
WINDOW = 10.0  # seconds per sample

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(SECONDS + 300),
    pytest.mark.skipif(not SOAK, reason="endurance runs under make soak (CONVEYOR_SOAK=1)"),
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_an_hour_at_500_jobs_a_second(
    tmp_path: Path, children: Callable[..., Child], figure: Callable[..., None]
) -> None:
    db = tmp_path / "endurance.db"
    async with Runtime(db, queues=[Soak()], workers=False) as producer:
        worker = children("worker.py", str(db), "--retain", str(RETAIN))
        with anyio.fail_after(30):
            await wait_until(lambda: "ready" in worker.output(), 0.05)
        samples: list[dict[str, float]] = []
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < SECONDS:
            window_end = elapsed + WINDOW
            latencies: list[float] = []
            while time.monotonic() - start < window_end:
                wait = start + sent / RATE - time.monotonic()
                if wait > 0:
                    await anyio.sleep(wait)
                t0 = time.perf_counter()
                await producer.enqueue("soak", {"steps": 3})
                latencies.append(time.perf_counter() - t0)
                sent += 1
            counts = await producer.queue_counts()
            wal = db.with_name(db.name + "-wal")
            samples.append(
                {
                    "t": round(time.monotonic() - start),
                    "rss_mb": rss_mb(worker.pid),
                    "wal_mb": (wal.stat().st_size if wal.exists() else 0) / 2**20,
                    "jobs": sum(counts["soak"].values()),
                    "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
                }
            )
    warm = [s for s in samples if s["t"] >= min(120.0, SECONDS / 5)]
    rss_growth = warm[-1]["rss_mb"] / warm[0]["rss_mb"] - 1
    max_jobs = max(s["jobs"] for s in samples)
    figure(
        seconds=round(SECONDS),
        jobs=sent,
        rss_after_warmup_mb=round(warm[0]["rss_mb"], 1),
        rss_end_mb=round(warm[-1]["rss_mb"], 1),
        rss_growth_pct=round(100 * rss_growth, 1),
        peak_rss_mb=round(peak_rss_mb(worker.pid), 1),
        wal_max_mb=round(max(s["wal_mb"] for s in samples), 1),
        jobs_table_max=max_jobs,
        enqueue_p99_worst_ms=round(max(s["p99_ms"] for s in samples), 1),
        # The worker's RSS over the run, one sample a minute: flat, or still growing?
        rss_by_minute=",".join(f"{s['rss_mb']:.1f}" for s in samples[::6]),
    )
    assert rss_growth < 0.10
    assert max(s["wal_mb"] for s in samples) < 64 + 16  # journal_size_limit, and a checkpoint
    assert max_jobs < RATE * (RETAIN + 6) * 1.5  # retention keeps the table bounded
    assert max(s["p99_ms"] for s in samples) < 50
