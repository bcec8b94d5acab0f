"""throughput.py --metrics and --tracing: what collecting metrics and tracing cost the
hot path, as e2e runs in each mode, in turn (so drift in the machine's load falls on all
alike), and their medians' ratios."""

from __future__ import annotations

import time
from typing import Any

from _children import median, run_child
from _scenarios import SCRAPE_EVERY

METRICS_MODES = ("off", "on", "scraped")
TRACING_MODES = ("absent", "api", "sdk")


def metrics_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each metrics mode, in turn (so drift in the machine's load falls on all
    alike), and the ratios of the medians to "off"."""
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in METRICS_MODES}
    for _ in range(runs):
        for mode in by_mode:
            by_mode[mode].append(run_child("e2e", jobs, store, metrics=mode))
    medians = {mode: median(figures) for mode, figures in by_mode.items()}
    for mode, figures in medians.items():
        rates = sorted(r["jobs_per_s"] for r in by_mode[mode])
        label = f"e2e metrics {mode}" + (f" every {SCRAPE_EVERY}s" if mode == "scraped" else "")
        print(
            f"  {label:<36} "
            + "  ".join(fmt(k, v) for k, v in figures.items())
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


def tracing_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each tracing mode, in turn, and the ratios of the medians to "absent"."""
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in TRACING_MODES}
    for _ in range(runs):
        for mode in by_mode:
            by_mode[mode].append(run_child("e2e", jobs, store, tracing=mode))
    medians = {mode: median(figures) for mode, figures in by_mode.items()}
    for mode, figures in medians.items():
        rates = sorted(r["jobs_per_s"] for r in by_mode[mode])
        print(
            f"  {'e2e tracing ' + mode:<36} "
            + "  ".join(fmt(k, v) for k, v in figures.items())
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


def fmt(key: str, value: Any) -> str:
    if key == "jobs_per_s":
        return f"{value:>9,.0f} jobs/s"
    if key.endswith("_ms"):
        return f"{key[:-3]} {value:.2f} ms"
    if key == "peak_rss_mb":
        return f"peak RSS {value:.0f} MB"
    return f"{key} {value}"
