"""What a runtime counts for its metrics, in plain integers and arrays.

The engine counts runs here as they start, end and are written (see Engine.start_run,
Engine.end_run and CommittingWrites), the store its errors, the server its websocket
clients. Nothing here locks or allocates per job: everything runs on the event loop, so
a reader on the loop (conveyor.metrics, at scrape time) sees consistent numbers. This
module knows nothing of Prometheus; conveyor.metrics turns these into its families.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Final

from ._states import JobStatus

if TYPE_CHECKING:
    from .store import Transition

SECONDS_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Upper bounds of the run-duration and queue-wait histograms, in seconds: Prometheus's
default buckets, stretched to an hour for jobs that take minutes."""


_queue_of: Final = attrgetter("queue")
_status_of: Final = attrgetter("status")


class Histogram:
    """Observations counted per bucket (not cumulative; the exporter sums them), and
    their sum. ``counts[i]`` holds values <= ``bounds[i]`` and > the bound before it; the
    last slot holds values above every bound. RunStats adds to them (an observation is
    ``counts[bisect_left(bounds, value)] += 1``, inlined there on the per-job path)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = SECONDS_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class QueueRuns:
    """The runs of one queue this process started, ended, wrote and rescued."""

    __slots__ = (
        "cancelled",
        "completed",
        "duration",
        "failed",
        "rescued",
        "retried",
        "started",
        "wait",
    )

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0  # failed attempts scheduled to run again
        self.cancelled = 0
        self.rescued = 0  # runs of lost workers taken back (requeued, failed or cancelled)
        self.duration = Histogram()  # seconds from a run's start to its end (settled)
        self.wait = Histogram()  # seconds from enqueue (or falling due) to the run's start


class RunStats:
    """Per queue, the runs of this process (see QueueRuns).

    Bound: one entry per queue name this process ran or rescued a job of, i.e. at most
    the queues in the store; an entry is a few dozen integers.
    """

    __slots__ = ("queues",)

    def __init__(self) -> None:
        self.queues: dict[str, QueueRuns] = {}

    def of(self, queue: str) -> QueueRuns:
        runs = self.queues.get(queue)
        if runs is None:
            runs = self.queues[queue] = QueueRuns()
        return runs

    # started() and ended() run once per job: one call each, the observation inlined.

    def started(self, queue: str, wait: float) -> None:
        runs = self.queues.get(queue) or self.of(queue)
        runs.started += 1
        if wait < 0.0:
            wait = 0.0  # the enqueueing machine's clock was ahead of the claiming one's
        histogram = runs.wait
        histogram.counts[bisect_left(histogram.bounds, wait)] += 1
        histogram.sum += wait

    def ended(self, queue: str, duration: float) -> None:
        histogram = (self.queues.get(queue) or self.of(queue)).duration
        histogram.counts[bisect_left(histogram.bounds, duration)] += 1
        histogram.sum += duration

    def finished(self, transitions: Iterable[Transition]) -> None:
        """Count the outcomes of runs as written (an outcome fenced out because the job
        was rescued meanwhile is not among them: the rescued run decides it)."""
        # Counted in C (groupby, map, Counter), not row by row in Python: this runs for
        # every run's outcome. A batch is mostly one queue's rows.
        for queue, rows in groupby(transitions, key=_queue_of):
            runs = self.of(queue)
            counts = Counter(map(_status_of, rows))
            runs.completed += counts[JobStatus.COMPLETED]
            runs.failed += counts[JobStatus.FAILED]
            runs.retried += counts[JobStatus.SCHEDULED]
            runs.cancelled += counts[JobStatus.CANCELLED]
            # QUEUED: put back unfinished by a worker stopping; no outcome of the run.

    def rescued(self, transitions: Iterable[Transition]) -> None:
        """Count the runs of lost workers that a rescue took back."""
        for t in transitions:
            self.of(t.queue).rescued += 1


class RuntimeStats:
    """What conveyor.metrics reads of one runtime: its runs (None when the runtime was
    made with ``metrics=False``), its store's errors by StoreError class name, and how
    many websocket clients are connected to it (the server and any other transport
    serving it add and remove theirs). ``exporter`` is conveyor.metrics' own state for
    this runtime (its registry), made on the first scrape."""

    __slots__ = ("exporter", "runs", "store_errors", "websocket_clients")

    def __init__(self, runs: RunStats | None, store_errors: Mapping[str, int]) -> None:
        self.runs = runs
        self.store_errors = store_errors
        self.websocket_clients = 0
        self.exporter: object | None = None
