"""Structured logging: the job's id and queue on every record, through the standard
logging module."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from conveyor import JobLogFilter, Queue, Runtime

pytestmark = pytest.mark.anyio

app_log = logging.getLogger("myapp.exports")


class Logging(Queue):
    name = "logging"

    async def handle_item(self, item: dict[str, Any]) -> None:
        app_log.info("exporting %s", item["what"])
        if item.get("fail"):
            raise ValueError("no rows")


class SyncLogging(Queue):
    name = "sync_logging"

    def handle_item(self, item: Any) -> None:
        app_log.info("in a worker thread")


async def test_records_name_their_job(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(JobLogFilter())  # as a user adds it to their own handler
    async with Runtime(db_path, queues=[Logging(), SyncLogging()]) as rt:
        ok = await rt.enqueue("logging", {"what": "sales"})
        bad = await rt.enqueue("logging", {"what": "users", "fail": True})
        threaded = await rt.enqueue("sync_logging", {})
        for job in (ok, bad, threaded):
            await rt.wait(job.id, timeout=10)
        app_log.info("outside any job")
    records = caplog.records

    def of(job_id: str) -> list[str]:
        return [r.getMessage() for r in records if r.job_id == job_id]  # type: ignore[attr-defined]

    assert "exporting sales" in of(ok.id)
    assert "exporting users" in of(bad.id)
    assert "in a worker thread" in of(threaded.id)
    # conveyor's own record of the failure names the job and its queue.
    failure = next(r for r in records if r.name == "conveyor.job" and r.levelno == logging.WARNING)
    assert (failure.job_id, failure.queue) == (bad.id, "logging")  # type: ignore[attr-defined]
    assert "no rows" in failure.getMessage()
    outside = next(r for r in records if r.getMessage() == "outside any job")
    assert outside.job_id == "-"  # type: ignore[attr-defined]
    # Every record of conveyor's loggers carries the fields, job or not.
    assert all(hasattr(r, "job_id") for r in records if r.name.startswith("conveyor"))
