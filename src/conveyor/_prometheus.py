"""The Prometheus side of conveyor.metrics: a collector that turns a runtime's stats (see
_stats.py) and the fleet read from its store into metric families, at scrape time.

Imported only by conveyor.metrics, once prometheus-client (the ``metrics`` extra) is
known to be installed. A custom collector rather than prometheus-client's Counter and
Histogram objects: those take a lock on every increment, while conveyor's counts are
plain integers the engine adds to on the event loop, read here on the same loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._states import JobStatus
from ._stats import Histogram, QueueRuns, RuntimeStats

DEFAULT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


_ESCAPING: Final = re.compile(r";\s*escaping=[^;,]*", re.IGNORECASE)


class Fleet(msgspec.Struct, frozen=True):
    """What the store says of every process at once: jobs per queue and status, the
    paused queues, and the registered workers live and lost."""

    jobs: dict[str, dict[JobStatus, int]]
    paused: dict[str, bool]
    workers_live: int
    workers_lost: int


# (metric name without _total, help, the QueueRuns attribute it counts)
_RUN_COUNTERS: Final = (
    ("conveyor_runs_started", "Runs this process started.", "started"),
    ("conveyor_runs_completed", "Runs this process completed (outcome written).", "completed"),
    ("conveyor_runs_failed", "Runs this process ended failed, for good.", "failed"),
    (
        "conveyor_runs_retried",
        "Failed runs this process scheduled to be retried.",
        "retried",
    ),
    ("conveyor_runs_cancelled", "Runs this process ended cancelled.", "cancelled"),
    (
        "conveyor_runs_rescued",
        "Runs of lost workers this process took back (requeued, or ended when lost too"
        " often or cancelled meanwhile).",
        "rescued",
    ),
)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus's cumulative buckets of a histogram counted per bucket."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        total += count
        buckets.append((repr(float(bound)), total))  # 0.005, 1.0: as Go prints them
    buckets.append(("+Inf", total + histogram.counts[-1]))
    return buckets


class RuntimeCollector(Collector):
    """The families of one runtime; ``fleet`` is set before each scrape (None: the store
    could not be read, and the fleet's gauges are left out of this scrape)."""

    def __init__(self, stats: RuntimeStats) -> None:
        self.stats = stats
        self.fleet: Fleet | None = None

    def collect(self) -> Iterator[Metric]:
        if self.fleet is not None:
            yield from self._fleet(self.fleet)
        runs = self.stats.runs
        if runs is not None:
            queues = sorted(runs.queues.items())
            yield from self._runs(queues)
        errors = CounterMetricFamily(
            "conveyor_store_errors",
            "Errors this process's store raised, by kind (the StoreError class).",
            labels=["kind"],
        )
        for kind, count in sorted(self.stats.store_errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield GaugeMetricFamily(
            "conveyor_websocket_clients",
            "Websocket clients connected to this process's server.",
            value=self.stats.websocket_clients,
        )

    def _fleet(self, fleet: Fleet) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs",
            "Jobs in the store, per queue and status (every process's).",
            labels=["queue", "status"],
        )
        for queue, counts in fleet.jobs.items():
            for status, count in counts.items():
                jobs.add_metric([queue, status.value], count)
        yield jobs
        paused = GaugeMetricFamily(
            "conveyor_queue_paused",
            "1 while the queue is paused for every process, else 0.",
            labels=["queue"],
        )
        for queue, is_paused in fleet.paused.items():
            paused.add_metric([queue], 1 if is_paused else 0)
        yield paused
        workers = GaugeMetricFamily(
            "conveyor_workers",
            "Worker processes registered in the store: live, or lost (silent past their"
            " lease, their jobs being rescued).",
            labels=["state"],
        )
        workers.add_metric(["live"], fleet.workers_live)
        workers.add_metric(["lost"], fleet.workers_lost)
        yield workers

    def _runs(self, queues: list[tuple[str, QueueRuns]]) -> Iterator[Metric]:
        for name, documentation, attribute in _RUN_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["queue"])
            for queue, runs in queues:
                family.add_metric([queue], getattr(runs, attribute))
            yield family
        duration = HistogramMetricFamily(
            "conveyor_run_duration_seconds",
            "Seconds from a run's start to its end (its handler's, and its transaction's"
            " commit), in this process.",
            labels=["queue"],
            unit="seconds",
        )
        wait = HistogramMetricFamily(
            "conveyor_queue_wait_seconds",
            "Seconds from a job's enqueue (or, delayed or retried, from falling due) to"
            " the start of its run, for the runs this process started.",
            labels=["queue"],
            unit="seconds",
        )
        for queue, runs in queues:
            duration.add_metric([queue], _buckets(runs.duration), runs.duration.sum)
            wait.add_metric([queue], _buckets(runs.wait), runs.wait.sum)
        yield duration
        yield wait


class Exporter:
    """One runtime's registry (its own, not prometheus-client's global one: several
    runtimes in a process must not collide) and its collector."""

    def __init__(self, stats: RuntimeStats) -> None:
        self.collector = RuntimeCollector(stats)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` (an HTTP Accept header) asks for:
        OpenMetrics when asked, else Prometheus's text format. A header prometheus-client
        cannot make sense of gets the text format. An ``escaping=`` it asks for is left
        out: conveyor's names are all valid as they are, and "dots" would double their
        underscores."""
        encoder: Callable[[CollectorRegistry], bytes]
        accept = _ESCAPING.sub("", accept)
        try:
            encoder, content_type = choose_encoder(accept)
            return encoder(self.registry), content_type
        except (TypeError, ValueError):  # a version or escaping it cannot compare
            return generate_latest(self.registry), DEFAULT_CONTENT_TYPE
