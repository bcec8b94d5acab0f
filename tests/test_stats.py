"""conveyor._stats: outcomes counted in bulk per batch (RunStats.finished) equal counting
each transition on its own, whatever the mix of queues and statuses in a batch."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import JobStatus
from conveyor._stats import RunStats
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
