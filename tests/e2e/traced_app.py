"""A program traced with OpenTelemetry's SDK and its in-memory exporter, for
test_tracing.py: ``python traced_app.py ROLE DB [JOB_ID...]`` prints, as one JSON line,
the spans it finished (and, producing, the ids of the jobs it enqueued).

Roles: ``produce`` enqueues inside a "web request" span without running workers;
``work`` runs workers until the given jobs are finished; ``all`` does both in one
process, with jobs that fail, retry and start spans of their own; ``untraced`` blocks
opentelemetry before importing conveyor, as where it is not installed; ``unset`` has it
installed but sets no tracer provider, as an application that configured no SDK.
"""

from __future__ import annotations

import json
import sys
from typing import Any

if sys.argv[1] == "untraced":
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed

import anyio

from conveyor import JobFailed, Queue, Runtime

exporter: Any = None
if sys.argv[1] not in ("untraced", "unset"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


class Traced(Queue):
    name = "traced"
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 0.0)

    async def handle_item(self, item: dict[str, Any]) -> str:
        if item.get("fail"):
            raise ValueError(f"broken {item['fail']}")
        if item.get("refuse"):
            raise JobFailed("refused for good")
        if item.get("child"):
            with trace.get_tracer("the app").start_as_current_span("the handler's own work"):
                pass
        return "done"


def spans() -> list[dict[str, Any]]:
    if exporter is None:
        return []
    found = []
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        found.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{context.trace_id:032x}",
                "span_id": f"{context.span_id:016x}",
                "parent": None if span.parent is None else f"{span.parent.span_id:016x}",
                "links": [f"{link.context.span_id:016x}" for link in span.links],
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "description": span.status.description,
                "events": [event.name for event in span.events],
            }
        )
    return found


async def produce(db: str, *, run: bool) -> list[str]:
    async with Runtime(db, queues=[Traced()], workers=run) as rt:
        with trace.get_tracer("the app").start_as_current_span("GET /import"):
            ids = [(await rt.enqueue("traced", {"child": True}, meta={"tenant": "acme"})).id]
            if run:
                ids.append((await rt.enqueue("traced", {"fail": 1})).id)
                ids.append((await rt.enqueue("traced", {"refuse": 1})).id)
                ids += [j.id for j in await rt.enqueue_many("traced", [{}, {}, {}])]
        if run:
            with anyio.fail_after(30):
                for job_id in ids:
                    await rt.wait(job_id)
        return ids


async def work(db: str, ids: list[str]) -> None:
    async with Runtime(db, queues=[Traced()]) as rt:
        with anyio.fail_after(30):
            for job_id in ids:
                await rt.wait(job_id)


async def untraced(db: str, role: str) -> list[str]:
    from conveyor import _tracing

    if role == "untraced":
        assert _tracing.TRACING is None
    else:
        assert _tracing.TRACING is not None
        assert not _tracing.TRACING.active()
    async with Runtime(db, queues=[Traced()]) as rt:
        job = await rt.enqueue("traced", {})
        with anyio.fail_after(30):
            done = await rt.wait(job.id)
        assert done.result == "done", done
        assert done.meta == {}, done
        return [job.id]


def main() -> None:
    role, db, *ids = sys.argv[1:]
    if role == "produce":
        ids = anyio.run(lambda: produce(db, run=False))
    elif role == "all":
        ids = anyio.run(lambda: produce(db, run=True))
    elif role == "work":
        anyio.run(work, db, ids)
    else:
        ids = anyio.run(untraced, db, role)
    print(json.dumps({"ids": ids, "spans": spans()}))


if __name__ == "__main__":
    main()
