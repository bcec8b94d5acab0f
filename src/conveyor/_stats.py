"""What a runtime counts for its metrics, in plain integers and arrays.

The engine counts runs here as they are claimed, end and are written (see
CommittingWrites and Engine.end_run), the store its errors, the server its websocket
clients. Nothing here locks, and what is per job is counted a batch at a time (a
claim's jobs, FOLD_AT durations, a write's outcomes). Everything runs on the event loop,
so a reader on the loop (conveyor.metrics, at scrape time) sees consistent numbers. This
module knows nothing of Prometheus; conveyor.metrics turns these into its families.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Final

from ._states import JobStatus

if TYPE_CHECKING:
    from ._models import Job
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


FOLD_AT: Final = 512
"""Run durations a queue keeps aside before counting them into its histogram in one go
(sorted, then one bisection per bucket): the bound of that buffer. At the bound, and
whenever the histogram is read, it is folded in; nothing is dropped."""


class Histogram:
    """Observations counted per bucket (not cumulative; the exporter sums them), and
    their sum. ``counts[i]`` holds values <= ``bounds[i]`` and > the bound before it; the
    last slot holds values above every bound. Values are observed in batches (a claim's
    waits, a queue's FOLD_AT durations): per batch, not per value, in Python."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = SECONDS_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, values: list[float]) -> None:
        """Count ``values`` (sorted in place). One below 0 counts as 0: a wait measured
        against another machine's clock, ahead of this one's."""
        if not values:
            return
        values.sort()
        counts = self.counts
        below = 0  # values counted so far: all <= the bound before this one
        for i, bound in enumerate(self.bounds):
            upto = bisect_right(values, bound, below)
            counts[i] += upto - below
            below = upto
            if below == len(values):
                break
        else:
            counts[-1] += len(values) - below
        negative = bisect_left(values, 0.0)
        self.sum += sum(values) - sum(values[:negative])


class QueueRuns:
    """The runs of one queue this process started, ended, wrote and rescued."""

    __slots__ = (
        "_duration",
        "_ended",
        "cancelled",
        "completed",
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
        self.wait = Histogram()  # seconds from enqueue (or falling due) to the run's start
        self._duration = Histogram()
        self._ended: list[float] = []  # durations not yet in _duration (< FOLD_AT of them)

    @property
    def duration(self) -> Histogram:
        """Seconds from a run's start to its end (settled), every ended run's."""
        self._fold()
        return self._duration

    def ended(self, duration: float) -> None:
        ended = self._ended
        ended.append(duration)
        if len(ended) >= FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        self._duration.observe(self._ended)
        self._ended = []


class RunStats:
    """Per queue, the runs of this process (see QueueRuns).

    Bound: one entry per queue name this process ran or rescued a job of, i.e. at most
    the queues in the store; an entry is a few dozen integers and < FOLD_AT floats.
    """

    __slots__ = ("queues",)

    def __init__(self) -> None:
        self.queues: dict[str, QueueRuns] = {}

    def of(self, queue: str) -> QueueRuns:
        runs = self.queues.get(queue)
        if runs is None:
            runs = self.queues[queue] = QueueRuns()
        return runs

    def claimed(self, queue: str, jobs: Sequence[Job], now: float) -> None:
        """Count the runs a claim of ``queue`` at ``now`` started, and how long each job
        waited: since its enqueue, or since it fell due (a delayed job, a retry), until
        the claim. (A claimed job runs, or a stopping worker puts it back unrun: a run
        that ended at once.)"""
        if not jobs:
            return
        runs = self.queues.get(queue) or self.of(queue)
        runs.started += len(jobs)
        claimed_at = datetime.fromtimestamp(now, UTC)
        runs.wait.observe(
            [(claimed_at - (job.scheduled_at or job.created_at)).total_seconds() for job in jobs]
        )

    def ended(self, queue: str, duration: float) -> None:
        """Count a run's duration, once it ended (once per run: kept aside, folded into
        the histogram FOLD_AT at a time)."""
        (self.queues.get(queue) or self.of(queue)).ended(duration)

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
