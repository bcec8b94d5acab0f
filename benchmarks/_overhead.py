"""throughput.py --metrics and --tracing: what collecting metrics and tracing cost the
hot path, as rounds of e2e runs in each mode (so drift in the machine's load falls on all
alike), and each mode's paired ratios to the mode without it."""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from _children import median, run_child
from _scenarios import SCRAPE_EVERY

METRICS_MODES = ("off", "on", "scraped")
TRACING_MODES = ("absent", "api", "sdk")


def metrics_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each metrics mode, R rounds, and each mode's paired ratio to "off" (see
    _rounds); then the engine's counting alone, timed per job."""
    medians = _rounds("e2e metrics", METRICS_MODES, jobs, runs, store, "metrics")
    per_job = _counting_cost()
    share = per_job * medians["off"]["jobs_per_s"]
    print(
        f"  counting alone: {per_job * 1e6:.2f} us per job (what the engine adds per run,"
        f" timed here), {share:.1%} of a job's time at the metrics-off rate"
    )


def tracing_table(jobs: int, runs: int, store: str) -> None:
    """e2e in each tracing mode, R rounds, and each mode's paired ratio to "absent"."""
    _rounds("e2e tracing", TRACING_MODES, jobs, runs, store, "tracing")


def _rounds(
    label: str, modes: tuple[str, ...], jobs: int, runs: int, store: str, option: str
) -> dict[str, dict[str, Any]]:
    """R rounds of e2e, each running every mode once, the order rotated from round to
    round (a position in a round has an edge of its own on this machine: the first of two
    alike runs was seen 3% faster). Each mode's figure is then the median of its rounds'
    ratios to the first mode's run of the same round (paired: a round's runs share the
    machine's load), with a 95% bootstrap interval: an overhead is measurable when the
    interval leaves out 1. Returns each mode's median figures."""
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for round_ in range(runs):
        shift = round_ % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            by_mode[mode].append(run_child("e2e", jobs, store, **{option: mode}))
    medians = {mode: median(figures) for mode, figures in by_mode.items()}
    for mode, figures in medians.items():
        rates = sorted(r["jobs_per_s"] for r in by_mode[mode])
        name = f"{label} {mode}" + (f" every {SCRAPE_EVERY}s" if mode == "scraped" else "")
        print(
            f"  {name:<36} "
            + "  ".join(fmt(k, v) for k, v in figures.items())
            + f"  (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    base = modes[0]
    for mode in modes[1:]:
        ratios = [
            run["jobs_per_s"] / against["jobs_per_s"]
            for run, against in zip(by_mode[mode], by_mode[base], strict=True)
        ]
        low, high = _interval(ratios)
        verdict = "measurable" if high < 1.0 or low > 1.0 else "within the noise"
        print(
            f"  {mode} / {base} = {statistics.median(ratios):.3f} (jobs/s, the median of"
            f" {len(ratios)} rounds' ratios; 95% interval {low:.3f} to {high:.3f}: {verdict})"
        )
    return medians


def _interval(ratios: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``ratios`` (seeded: the
    same runs give the same interval)."""
    draw = random.Random(0)
    medians = sorted(
        statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _counting_cost() -> float:
    """Seconds per job of what the engine does for metrics on each run: the starts and
    waits counted per claim (of 100 jobs, as e2e's claims are at most its free slots),
    the two clock reads and the duration kept per run, and the outcomes counted per
    write (of 500, as the finisher makes them)."""
    from datetime import UTC, datetime

    from conveyor import JobStatus
    from conveyor._clock import SystemClock
    from conveyor._models import Job
    from conveyor._stats import RunStats
    from conveyor.store import Transition

    runs = RunStats()
    clock = SystemClock()
    enqueued = datetime.now(UTC)
    claim = [
        Job(
            id=str(i),
            queue="noop",
            status=JobStatus.RUNNING,
            payload=None,
            created_at=enqueued,
            updated_at=enqueued,
        )
        for i in range(100)
    ]
    claimed_at = enqueued.timestamp() + 0.003
    batch = [
        Transition(seq=i, job_id=str(i), queue="noop", status=JobStatus.COMPLETED, at=0.0)
        for i in range(500)
    ]
    rounds = 40
    times = []
    for _ in range(5):  # the quickest of five: the others were interrupted
        begin = time.perf_counter()
        for _ in range(rounds):
            for _ in range(len(batch) // len(claim)):
                runs.claimed("noop", claim, claimed_at)
                for _ in claim:
                    began = clock.monotonic()
                    runs.ended("noop", clock.monotonic() - began)
            runs.finished(batch)
        times.append(time.perf_counter() - begin)
    return min(times) / (rounds * len(batch))


def fmt(key: str, value: Any) -> str:
    if key == "jobs_per_s":
        return f"{value:>9,.0f} jobs/s"
    if key.endswith("_ms"):
        return f"{key[:-3]} {value:.2f} ms"
    if key == "peak_rss_mb":
        return f"peak RSS {value:.0f} MB"
    return f"{key} {value}"
