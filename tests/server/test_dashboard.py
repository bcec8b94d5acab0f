"""The dashboard in a real headless Chromium (Debian's, driven by playwright; see
conftest.py), against a real runtime serving a real SQLite file. Screenshots land in
each test's tmp dir."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from playwright.async_api import Page, expect

from conveyor import JobStatus, Queue, Runtime

from ..conftest import Worker
from ..worker_app import Work as WorkerQueue

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

WAIT_MS = 15_000  # each expectation's deadline in the browser


class Steps(Queue):
    """Reports 1/4 .. 4/4, each step when the test sends it one (so the test sets the
    pace, and a cancel finds it waiting)."""

    name = "steps"
    gate: MemoryObjectReceiveStream[None]

    async def handle_item(self, item: Any) -> str:
        for step in range(1, 5):
            await self.gate.receive()
            self.report_progress(current=step, total=4, message=f"step {step} of 4")
        return "all steps"


class Flaky(Queue):
    """Fails while ``broken`` is set, with a traceback."""

    name = "flaky"
    broken = True

    async def handle_item(self, item: Any) -> str:
        if type(self).broken:
            raise RuntimeError("disk on fire")
        return "fine now"


_streams: list[Any] = []


@pytest.fixture(autouse=True)
def _close_gates() -> Iterator[None]:
    yield
    while _streams:
        _streams.pop().close()


def make_runtime(
    db: Path, port: int = 0, **kwargs: Any
) -> tuple[Runtime, MemoryObjectSendStream[None]]:
    """A runtime serving Steps and Flaky, and the stream that paces Steps."""
    send, receive = anyio.create_memory_object_stream[None](100)
    _streams.extend((send, receive))
    steps = Steps()
    steps.gate = receive
    rt = Runtime(db, queues=[steps, Flaky()], serve=("127.0.0.1", port), shutdown_grace=0, **kwargs)
    return rt, send


def page_url(rt: Runtime) -> str:
    return rt.server_url.replace("ws://", "http://") + "/"


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


async def test_live_progress_cancel_rerun_filters_and_job_view(
    page: Page, db_path: Path, tmp_path: Path
) -> None:
    rt, step = make_runtime(db_path)
    async with rt:
        await page.goto(page_url(rt))
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)

        # A progress bar that moves as the handler reports.
        job = await rt.enqueue("steps", {"n": 1})
        bar = row(page, job.id)
        await expect(bar.locator(".badge")).to_have_text("running", timeout=WAIT_MS)
        for pct in ("25%", "50%"):
            await step.send(None)
            await expect(bar.locator(".pct")).to_have_text(pct, timeout=WAIT_MS)
        await expect(bar.locator(".fill")).to_have_attribute(
            "style", "width: 50%;", timeout=WAIT_MS
        )
        await expect(bar.locator(".message")).to_have_text("step 2 of 4")

        # Cancel through the page: the handler stops, the record says so.
        await bar.get_by_role("button", name="Cancel").click()
        await expect(bar.locator(".badge")).to_have_text("cancelled", timeout=WAIT_MS)
        assert (await rt.wait(job.id, timeout=10)).status is JobStatus.CANCELLED
        await expect(bar.get_by_role("button", name="Rerun")).to_be_visible()

        # A failed job: its view shows payload, error, traceback and history; rerun it.
        bad = await rt.enqueue("flaky", {"note": "<b>not markup</b>"}, created_by="ops")
        assert (await rt.wait(bad.id, timeout=10)).status is JobStatus.FAILED
        failed = row(page, bad.id)
        await expect(failed.locator(".badge")).to_have_text("failed", timeout=WAIT_MS)
        await failed.locator(".id").click()
        detail = page.locator("#detail")
        await expect(detail).to_be_visible()
        await expect(page.locator("#detail-title")).to_have_text(bad.id)
        assert page.url.endswith(f"#job={bad.id}")  # the view has a link of its own
        await expect(page.locator("#detail-payload")).to_contain_text("<b>not markup</b>")
        await expect(page.locator("#detail-error")).to_have_text("RuntimeError: disk on fire")
        await expect(page.locator("#detail-traceback")).to_contain_text("Traceback")
        await expect(page.locator("#detail-fields")).to_contain_text("ops")
        history = page.locator("#detail-history li .badge")
        await expect(history).to_have_text(["queued", "running", "failed"])
        await expect(page.locator("#detail-cancel")).to_be_hidden()

        Flaky.broken = False
        try:
            await page.locator("#detail-rerun").click()
            await expect(failed.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
            await expect(history).to_have_text(
                ["queued", "running", "failed", "queued", "running", "completed"],
                timeout=WAIT_MS,
            )
            await expect(page.locator("#detail-result")).to_have_text("fine now")
        finally:
            Flaky.broken = True
        stored = await rt.history(bad.id)
        assert any("dashboard" in (entry.message or "") for entry in stored)
        await page.locator("#detail-close").click()
        await expect(detail).to_be_hidden()
        assert "#job" not in page.url

        # Queue counts, and the filters.
        steps_card = page.locator('.queue[data-queue="steps"]')
        await expect(steps_card.locator('[data-status="cancelled"]')).to_have_text(
            "cancelled 1", timeout=WAIT_MS
        )
        await expect(page.locator('.queue[data-queue="flaky"] .rate')).to_have_text("1/min")
        await page.select_option("#filter-queue", "flaky")
        await expect(page.locator("tr[data-job-id]")).to_have_count(1, timeout=WAIT_MS)
        await expect(row(page, bad.id)).to_be_visible()
        await page.select_option("#filter-queue", "")
        await page.select_option("#filter-status", "cancelled")
        await expect(page.locator("tr[data-job-id]")).to_have_count(1, timeout=WAIT_MS)
        await expect(row(page, job.id)).to_be_visible()
        await page.select_option("#filter-status", "")
        await expect(page.locator("tr[data-job-id]")).to_have_count(2, timeout=WAIT_MS)
        await page.screenshot(path=tmp_path / "dashboard-live.png", full_page=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_reconnects_after_a_server_restart_and_resumes(page: Page, db_path: Path) -> None:
    port = free_port()
    first, step = make_runtime(db_path, port)
    async with first:
        await page.goto(page_url(first))
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        job = await first.enqueue("steps", {})
        await step.send(None)
        await expect(row(page, job.id).locator(".pct")).to_have_text("25%", timeout=WAIT_MS)
    # The server is gone; the job went back to the queue as the runtime stopped.
    await expect(page.locator("#conn")).to_contain_text("reconnecting", timeout=WAIT_MS)
    await expect(row(page, job.id).locator(".badge")).to_have_text("queued")
    # A job enqueued while the page is cut off: it arrives by the resume (since=), as
    # the page reloads no list on a reconnect.
    async with Runtime(db_path, queues=[Steps(), Flaky()], workers=False) as offline:
        missed = await offline.enqueue("flaky", {}, delay=3600)

    second, step = make_runtime(db_path, port)
    async with second:
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        await expect(row(page, missed.id).locator(".badge")).to_have_text(
            "scheduled", timeout=WAIT_MS
        )
        for _ in range(4):
            await step.send(None)
        assert (await second.wait(job.id, timeout=10)).status is JobStatus.COMPLETED
        bar = row(page, job.id)
        await expect(bar.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
        await expect(bar.locator(".pct")).to_have_text("100%")
        # And jobs enqueued after the reconnect arrive live as before.
        later = await second.enqueue("flaky", {})
        await expect(row(page, later.id).locator(".badge")).to_have_text("failed", timeout=WAIT_MS)


async def test_token_flow(page: Page, db_path: Path) -> None:
    rt, _ = make_runtime(db_path, token="s3cret")
    async with rt:
        await page.goto(page_url(rt))
        dialog = page.locator("#token-dialog")
        await expect(dialog).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#conn")).to_have_text("needs a token")
        await page.fill("#token-input", "wrong")
        await page.press("#token-input", "Enter")
        await expect(page.locator("#token-wrong")).to_be_visible(timeout=WAIT_MS)
        await page.fill("#token-input", "s3cret")
        await page.press("#token-input", "Enter")
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        job = await rt.enqueue("flaky", {})
        await expect(row(page, job.id).locator(".badge")).to_have_text("failed", timeout=WAIT_MS)

        # A link that carries the token connects at once, and drops it from the URL.
        fresh = await page.context.new_page()
        await fresh.goto(page_url(rt) + "?token=s3cret")
        await expect(fresh.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        assert "token" not in fresh.url
        await expect(row(fresh, job.id)).to_be_visible(timeout=WAIT_MS)
        await fresh.close()


async def test_a_link_opens_the_job_view(page: Page, db_path: Path) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        job = await rt.enqueue("flaky", {"linked": True})
        assert (await rt.wait(job.id, timeout=10)).status is JobStatus.FAILED
        await page.goto(page_url(rt) + f"#job={job.id}")
        await expect(page.locator("#detail-title")).to_have_text(job.id, timeout=WAIT_MS)
        await expect(page.locator("#detail-payload")).to_contain_text('"linked": true')
        await expect(page.locator("#detail-history li .badge")).to_have_text(
            ["queued", "running", "failed"]
        )
        # A link to a job that does not exist (purged, mistyped) says so and shows none.
        await page.goto(page_url(rt) + "#job=01NOSUCHJOB")
        await expect(page.locator(".toast")).to_contain_text("01NOSUCHJOB", timeout=WAIT_MS)
        await expect(page.locator("#detail")).to_be_hidden()


async def test_older_jobs_page_by_page(page: Page, db_path: Path) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        jobs = await rt.enqueue_many("flaky", [{"n": n} for n in range(105)], delay=3600)
        await page.goto(page_url(rt))
        rows = page.locator("tr[data-job-id]")
        await expect(rows).to_have_count(100, timeout=WAIT_MS)  # the newest page
        await expect(row(page, jobs[-1].id)).to_be_visible()
        await expect(row(page, jobs[0].id)).to_have_count(0)
        older = page.locator("#older")
        await older.click()
        await expect(rows).to_have_count(105, timeout=WAIT_MS)
        await expect(rows.last).to_have_attribute("data-job-id", jobs[0].id)
        await expect(older).to_be_hidden()  # nothing older is left
        # A job enqueued now goes on top, and the older ones stay.
        latest = await rt.enqueue("flaky", {}, delay=3600)
        await expect(rows.first).to_have_attribute("data-job-id", latest.id, timeout=WAIT_MS)
        await expect(rows).to_have_count(106)


async def test_a_dashboard_beside_a_worker_process_shows_its_progress(
    page: Page, location: str, spawn: type[Worker]
) -> None:
    """`conveyor serve` watching a fleet: the handler runs in another process, and its
    progress bar still moves on this page (on SQLite and on PostgreSQL)."""
    worker = spawn()
    async with Runtime(
        location, queues=[WorkerQueue()], workers=False, serve=("127.0.0.1", 0)
    ) as rt:
        await page.goto(page_url(rt))
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        job = await rt.enqueue("work", {"steps": 4, "every": 0.6})
        bar = row(page, job.id)
        await expect(bar.locator(".badge")).to_have_text("running", timeout=WAIT_MS)
        # A report made between transitions, relayed from the worker's store writes.
        await expect(bar.locator(".message")).to_have_text(
            re.compile(r"^step [123]$"), timeout=WAIT_MS
        )
        await expect(bar.locator(".badge")).to_have_text("running")
        await expect(bar.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
        done = await rt.wait(job.id, timeout=10)
        assert done.result == {"pid": worker.pid}


async def test_a_queue_is_paused_and_resumed_from_its_card(page: Page, db_path: Path) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        await page.goto(page_url(rt))
        card = page.locator('.queue[data-queue="flaky"]')
        await card.get_by_role("button", name="pause queue flaky").click()
        await expect(card).to_have_class(re.compile(r"\bpaused\b"), timeout=WAIT_MS)
        await expect(card.locator(".paused-mark")).to_have_text("paused")
        [state] = [s for s in await rt.queue_states() if s.name == "flaky"]
        assert (state.paused, state.paused_by) == (True, "dashboard")
        await expect(page.locator("#filter-queue")).to_have_value("")  # not a card click
        waiting = await rt.enqueue("flaky", {})
        await expect(row(page, waiting.id).locator(".badge")).to_have_text(
            "queued", timeout=WAIT_MS
        )
        assert (await rt.job(waiting.id)).status is JobStatus.QUEUED  # paused: not started
        await card.get_by_role("button", name="resume queue flaky").click()
        with anyio.fail_after(10):
            assert (await rt.wait(waiting.id)).status is JobStatus.FAILED  # it ran
        await expect(card).not_to_have_class(re.compile(r"\bpaused\b"), timeout=WAIT_MS)


async def test_cancel_and_rerun_every_matching_job_from_the_toolbar(
    page: Page, db_path: Path
) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        waiting = await rt.enqueue_many("flaky", [{}] * 3, delay=3600)
        failed = await rt.enqueue_many("flaky", [{}] * 2)
        with anyio.fail_after(10):
            for job in failed:
                assert (await rt.wait(job.id)).status is JobStatus.FAILED
        asked: list[str] = []

        async def accept(dialog: Any) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        await page.goto(page_url(rt))
        # Connected first: a filter chosen before that lists nothing ("not connected").
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        await page.locator("#filter-queue").select_option("flaky")
        await page.get_by_role("button", name="Cancel all matching").click()
        await expect(page.locator(".toast").last).to_contain_text(
            "cancelled 3 jobs", timeout=WAIT_MS
        )
        assert asked[0] == "Cancel 3 scheduled/queued/running jobs of queue flaky?"
        for job in waiting:
            assert (await rt.job(job.id)).status is JobStatus.CANCELLED
        await page.get_by_role("button", name="Rerun failed").click()
        await expect(page.locator(".toast").last).to_contain_text("rerun 2 jobs", timeout=WAIT_MS)
        with anyio.fail_after(10):  # run again (and fail again: the queue is still broken)
            for job in failed:
                history = await rt.history(job.id)
                assert "rerun by dashboard" in [h.message for h in history]
                assert (await rt.wait(job.id)).status is JobStatus.FAILED


async def test_the_workers_panel_shows_each_runtime_and_its_heartbeat(
    page: Page, db_path: Path
) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        [me] = await rt.workers()
        await page.goto(page_url(rt))
        shown = page.locator(f'#workers tr[data-worker="{me.id}"]')
        await expect(shown.locator(".badge")).to_have_text("alive", timeout=WAIT_MS)
        await expect(shown).to_contain_text(str(os.getpid()))
        await expect(shown).to_contain_text("steps (1)")
        await expect(shown).to_contain_text(re.compile(r"\d+\.\ds ago"))


async def test_tags_and_meta_in_the_job_view_and_the_list_filters(
    page: Page, db_path: Path, tmp_path: Path
) -> None:
    rt, _ = make_runtime(db_path)
    async with rt:
        acme = await rt.enqueue(
            "flaky", {}, meta={"tenant": "acme", "note": "<b>[/x]</b>"}, tags=["import", "eu"]
        )
        other = await rt.enqueue("flaky", {}, meta={"tenant": "other"}, tags=["import"])
        plain = await rt.enqueue("flaky", {})
        for job in (acme, other, plain):
            await rt.wait(job.id, timeout=10)
        await page.goto(page_url(rt))
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        rows = page.locator("tr[data-job-id]")
        await expect(rows).to_have_count(3, timeout=WAIT_MS)
        await expect(row(page, acme.id).locator(".tags")).to_have_text("import, eu")

        # The job view: its tags among the fields, its meta as text (not markup).
        await row(page, acme.id).locator(".id").click()
        await expect(page.locator("#detail-fields")).to_contain_text("import, eu")
        meta = page.locator("#detail-meta")
        await expect(meta.locator("dt")).to_have_text(["tenant", "note"])
        await expect(meta.locator("dd")).to_have_text(["acme", "<b>[/x]</b>"])
        await page.locator("#detail-close").click()
        await row(page, plain.id).locator(".id").click()
        await expect(page.locator("#detail-title")).to_have_text(plain.id)
        await expect(page.locator("#detail-meta-block")).to_be_hidden()
        await page.locator("#detail-close").click()

        # The tag filter: the server's list, and the jobs that arrive while it is set
        # (events carry no tags: the page reads their records first).
        await page.fill("#filter-tag", "import")
        await page.press("#filter-tag", "Enter")
        await expect(rows).to_have_count(2, timeout=WAIT_MS)
        await expect(page.locator("#bulk-cancel")).to_be_disabled()
        later = await rt.enqueue("flaky", {}, tags=["import"])
        untagged = await rt.enqueue("flaky", {}, tags=["export"])
        await expect(row(page, later.id)).to_be_visible(timeout=WAIT_MS)
        await rt.wait(untagged.id, timeout=10)
        await expect(rows).to_have_count(3, timeout=WAIT_MS)
        assert await row(page, untagged.id).count() == 0

        # With a meta filter too: both must hold.
        await page.fill("#filter-meta", "tenant=acme")
        await page.press("#filter-meta", "Enter")
        await expect(rows).to_have_count(1, timeout=WAIT_MS)
        await expect(row(page, acme.id)).to_be_visible()
        await page.fill("#filter-tag", "")
        await page.press("#filter-tag", "Enter")
        await expect(rows).to_have_count(1, timeout=WAIT_MS)

        # A refused filter says why, and the table keeps the last list.
        await page.fill("#filter-meta", "tenant")
        await page.press("#filter-meta", "Enter")
        await expect(page.locator(".toast").last).to_contain_text("key=value", timeout=WAIT_MS)
        await page.fill("#filter-meta", "bad key=x")
        await page.press("#filter-meta", "Enter")
        await expect(page.locator(".toast").last).to_contain_text("meta key", timeout=WAIT_MS)

        # A meta pair in the job view filters the list by it.
        await page.fill("#filter-meta", "")
        await page.press("#filter-meta", "Enter")
        await expect(rows).to_have_count(5, timeout=WAIT_MS)
        await expect(page.locator("#bulk-cancel")).to_be_enabled()
        await row(page, other.id).locator(".id").click()
        await page.locator("#detail-meta").get_by_role("button", name="other").click()
        await expect(page.locator("#filter-meta")).to_have_value("tenant=other")
        await expect(rows).to_have_count(1, timeout=WAIT_MS)
        await expect(row(page, other.id)).to_be_visible()
        await page.screenshot(path=tmp_path / "dashboard-labels.png", full_page=True)
