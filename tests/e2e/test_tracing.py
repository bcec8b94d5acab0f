"""OpenTelemetry through jobs: a producer span on enqueue, a consumer span around each
run, per the messaging semantic conventions, with the trace context carried in the job's
meta from the enqueuing span to the run's, across processes. Each case runs in a process
of its own (tests/e2e/traced_app.py) with the SDK's in-memory exporter, so no tracer
provider leaks into the rest of the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(90)
APP = Path(__file__).with_name("traced_app.py")


def traced(role: str, db: Path, *ids: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(APP), role, str(db), *ids],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def only(spans: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [s for s in spans if all(s.get(k) == v for k, v in match.items())]


def test_one_trace_goes_from_the_request_through_another_process_s_run(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    produced = traced("produce", db)
    (job_id,) = produced["ids"]
    (request,) = only(produced["spans"], name="GET /import")
    (send,) = only(produced["spans"], name="send traced")
    assert send["kind"] == "PRODUCER"
    assert send["parent"] == request["span_id"]
    assert send["trace_id"] == request["trace_id"]
    assert send["attributes"] == {
        "messaging.system": "conveyor",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "traced",
        "messaging.message.id": job_id,
    }

    worked = traced("work", db, job_id)
    (run,) = only(worked["spans"], name="process traced")
    assert run["kind"] == "CONSUMER"
    assert run["trace_id"] == request["trace_id"]  # one trace: the request, then the job
    assert run["parent"] == send["span_id"]
    assert run["links"] == [send["span_id"]]
    assert run["attributes"] == {
        "messaging.system": "conveyor",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "traced",
        "messaging.message.id": job_id,
        "messaging.message.delivery_attempt": 1,
        "conveyor.job.outcome": "completed",
    }
    assert run["status"] == "UNSET"
    (own,) = only(worked["spans"], name="the handler's own work")
    assert own["parent"] == run["span_id"]  # the handler's spans are the run's children


def test_errors_are_recorded_on_the_run_s_span(tmp_path: Path) -> None:
    result = traced("all", tmp_path / "jobs.db")
    spans = result["spans"]
    _, failing, refused, *batch = result["ids"]
    runs = only(spans, name="process traced")
    retried = [r for r in runs if r["attributes"]["messaging.message.id"] == failing]
    assert [r["attributes"]["messaging.message.delivery_attempt"] for r in retried] == [1, 2]
    assert [r["attributes"]["conveyor.job.outcome"] for r in retried] == ["scheduled", "failed"]
    for attempt in retried:
        assert attempt["status"] == "ERROR"
        assert attempt["description"] == "ValueError: broken 1"
        assert attempt["events"] == ["exception"]
    (refusal,) = [r for r in runs if r["attributes"]["messaging.message.id"] == refused]
    assert (refusal["status"], refusal["description"]) == ("ERROR", "refused for good")
    # enqueue_many: one producer span for the batch, each job's run its child.
    (many,) = [
        s
        for s in only(spans, name="send traced")
        if "messaging.batch.message_count" in s["attributes"]
    ]
    assert many["attributes"]["messaging.batch.message_count"] == 3
    children = [r for r in runs if r["attributes"]["messaging.message.id"] in batch]
    assert len(children) == 3
    assert {r["parent"] for r in children} == {many["span_id"]}


@pytest.mark.parametrize("role", ["untraced", "unset"])
def test_without_opentelemetry_or_a_tracer_provider_jobs_run_untraced(
    tmp_path: Path, role: str
) -> None:
    """Not installed, or installed with no SDK configured: no span, no context in meta."""
    result = traced(role, tmp_path / "jobs.db")
    assert len(result["ids"]) == 1
    assert result["spans"] == []


def test_a_meta_with_no_room_left_goes_without_the_trace_context() -> None:
    from conveyor import Limits
    from conveyor._options import JobOptions, with_trace_context

    context = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    options = JobOptions(
        created_by=None,
        priority=0,
        scheduled_at=None,
        max_attempts=1,
        timeout=None,
        unique_key=None,
        meta={"tenant": "acme", "traceparent": "the caller's"},
        tags=[],
    )
    carried = with_trace_context(options, context, Limits())
    assert carried.meta == {"tenant": "acme", **context}  # the span's context wins
    full = Limits(meta_bytes=len(b'{"tenant":"acme","traceparent":"the caller\'s"}'))
    assert with_trace_context(options, context, full) is options  # kept as the caller gave it
