"""conveyor._stats: what is counted in bulk per batch (a write's outcomes, a histogram's
values, a claim's waits) equals counting each on its own, whatever the batch holds."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import JobStatus
from conveyor._models import Job
from conveyor._stats import FOLD_AT, SECONDS_BUCKETS, Histogram, RunStats
from conveyor.store import Transition

pytestmark = pytest.mark.timeout(60)

OUTCOME_OF = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.SCHEDULED: "retried",
    JobStatus.CANCELLED: "cancelled",
}

rows = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(list(JobStatus))), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(rows, max_size=4))
def test_outcomes_are_counted_per_queue_and_status(
    batches: list[list[tuple[str, JobStatus]]],
) -> None:
    runs = RunStats()
    expected: Counter[tuple[str, str]] = Counter()
    for batch in batches:
        runs.finished(
            [
                Transition(seq=i, job_id=str(i), queue=queue, status=status, at=0.0)
                for i, (queue, status) in enumerate(batch)
            ]
        )
        expected.update((q, OUTCOME_OF[s]) for q, s in batch if s in OUTCOME_OF)
    for queue in "abc":
        got = runs.queues.get(queue)
        for name in OUTCOME_OF.values():
            assert (0 if got is None else getattr(got, name)) == expected[(queue, name)]


values = st.lists(
    st.floats(min_value=-10.0, max_value=1e5, allow_nan=False)
    | st.sampled_from(SECONDS_BUCKETS),  # a value equal to a bound is in that bound's bucket
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(values, max_size=4))
def test_a_batch_is_counted_as_each_value_on_its_own(batches: list[list[float]]) -> None:
    """Histogram.observe (sorted, one bisection per bucket) counts each value in the
    bucket of the first bound >= it, a value below 0 as 0, and sums them."""
    histogram = Histogram()
    expected = [0] * (len(SECONDS_BUCKETS) + 1)
    total = 0.0
    for batch in batches:
        for value in batch:
            expected[bisect_left(SECONDS_BUCKETS, max(value, 0.0))] += 1
            total += max(value, 0.0)
        histogram.observe(list(batch))
    assert histogram.counts == expected
    assert histogram.sum == pytest.approx(total)


@settings(max_examples=50, deadline=None)
@given(durations=st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=3 * FOLD_AT))
def test_durations_kept_aside_are_all_in_the_histogram_when_read(durations: list[float]) -> None:
    """Durations are folded in FOLD_AT at a time, and whatever is left at a read."""
    runs = RunStats()
    for duration in durations:
        runs.ended("q", duration)
    if not durations:
        assert "q" not in runs.queues
        return
    histogram = runs.queues["q"].duration
    assert sum(histogram.counts) == len(durations)
    assert histogram.sum == pytest.approx(sum(durations))
    assert sum(runs.queues["q"].duration.counts) == len(durations)  # a read folds once


def test_a_claim_counts_its_runs_and_how_long_each_waited() -> None:
    """The wait of a claimed job runs from its enqueue, or from falling due when it was
    delayed or retried, to the claim; a clock ahead of the claimer's counts as 0."""
    enqueued = datetime(2026, 1, 1, tzinfo=UTC)
    claimed_at = enqueued + timedelta(seconds=2)
    jobs = [
        _job(created_at=enqueued),  # waited 2 s
        _job(created_at=enqueued, scheduled_at=claimed_at - timedelta(seconds=0.02)),
        _job(created_at=claimed_at + timedelta(seconds=1)),  # the enqueuer's clock ahead
    ]
    runs = RunStats()
    runs.claimed("q", jobs, claimed_at.timestamp())
    runs.claimed("q", [], claimed_at.timestamp())
    got = runs.queues["q"]
    assert got.started == 3
    assert got.wait.counts[SECONDS_BUCKETS.index(2.5)] == 1
    assert got.wait.counts[SECONDS_BUCKETS.index(0.025)] == 1
    assert got.wait.counts[0] == 1
    assert got.wait.sum == pytest.approx(2.02)


def _job(**times: datetime | None) -> Job:
    created_at = times.pop("created_at")
    assert created_at is not None
    return Job(
        id="j",
        queue="q",
        status=JobStatus.RUNNING,
        payload=None,
        created_at=created_at,
        updated_at=created_at,
        **times,  # type: ignore[arg-type]
    )
