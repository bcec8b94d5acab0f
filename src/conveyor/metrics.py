"""Prometheus metrics of a runtime (the ``metrics`` extra: ``pip install conveyor[metrics]``).

A runtime's server answers ``GET /metrics`` with them (the token applies when one is
set); any other web framework serves them with :func:`render`::

    body, content_type = await conveyor.metrics.render(rt, accept=request_accept_header)

The run counters and histograms are this process's (each process counts its own runs:
sum them across processes in PromQL); the jobs, paused-queue and workers gauges are
read from the store, so they are the whole fleet's. docs/metrics.md lists every metric.

This module imports without prometheus-client; :func:`render` then raises
:class:`~conveyor.MissingExtra`, saying what to install.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Protocol

import anyio

from ._errors import MissingExtra, StoreError, ValidationError
from ._limits import shown
from ._logging import get_logger
from ._models import QueueState, WorkerState
from ._stats import RuntimeStats

if TYPE_CHECKING:
    from ._prometheus import Exporter

__all__ = ("FLEET_READ_INTERVAL", "MetricsSource", "render")

log = get_logger("conveyor.metrics")

FLEET_READ_INTERVAL: Final = 1.0
"""Seconds a read of the fleet's gauges is reused for: scrapes closer together than this
(several Prometheus servers, a scrape storm) cost the database one read, not one each."""


class MetricsSource(Protocol):
    """What :func:`render` reads of a runtime (conveyor.Runtime is one)."""

    stats: RuntimeStats

    async def queue_states(self) -> list[QueueState]: ...

    async def workers(self) -> list[WorkerState]: ...


class _Scrapes:
    """One runtime's exporter and its cached read of the fleet (see FLEET_READ_INTERVAL)."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.read_at = -FLEET_READ_INTERVAL
        self.lock = anyio.Lock()  # one read at a time; a scrape waiting for it reuses it

    async def refresh(self, source: MetricsSource) -> None:
        from ._prometheus import Fleet

        async with self.lock:
            if time.monotonic() - self.read_at < FLEET_READ_INTERVAL:
                return
            try:
                states = await source.queue_states()
                workers = await source.workers()
            except StoreError as exc:
                # Counted in conveyor_store_errors_total; the counters are still served.
                log.warning("metrics: reading the jobs and workers failed: %s", exc)
                self.exporter.collector.fleet = None
            else:
                lost = sum(w.lost for w in workers)
                self.exporter.collector.fleet = Fleet(
                    jobs={s.name: s.counts for s in states},
                    paused={s.name: s.paused for s in states},
                    workers_live=len(workers) - lost,
                    workers_lost=lost,
                )
            self.read_at = time.monotonic()


def _scrapes(stats: RuntimeStats) -> _Scrapes:
    if isinstance(stats.exporter, _Scrapes):
        return stats.exporter
    try:
        from ._prometheus import Exporter
    except ImportError as exc:
        raise MissingExtra(
            f"Prometheus metrics need prometheus-client ({exc}): pip install 'conveyor[metrics]'"
        ) from None
    scrapes = _Scrapes(Exporter(stats))
    stats.exporter = scrapes
    return scrapes


async def render(source: MetricsSource, accept: str = "") -> tuple[bytes, str]:
    """The runtime's metrics, as the body and Content-Type of an HTTP answer: the
    format ``accept`` (the request's Accept header) asks for, OpenMetrics or
    Prometheus's text format (the default). Call it on the runtime's event loop.
    MissingExtra when prometheus-client is not installed; a StoreError reading the
    fleet leaves its gauges out (and is counted), the rest is served."""
    if not isinstance(accept, str):
        raise ValidationError(f"accept must be an Accept header's text, not {shown(accept)}")
    scrapes = _scrapes(source.stats)
    await scrapes.refresh(source)
    return scrapes.exporter.render(accept)
