"""The dashboard as operators use it, in a real headless Chromium against a real runtime
on a real SQLite file: throughput from the store, failed rows with their error, search
by id, creator, tag and meta, bulk operations on exactly the set shown, big results, the
keyboard, a 420 px screen, and axe-core (from the npm registry) finding no serious or
critical accessibility violation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from playwright.async_api import Page, expect

from conveyor import JobStatus, Queue, Runtime

from .conftest import OpenPage
from .test_dashboard import WAIT_MS, Flaky, Steps, free_port, page_url, row
from .test_server import http_get

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

AXE_DIR = Path(__file__).resolve().parents[1] / ".npm"  # git-ignored
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"


class Echo(Queue):
    """Returns its payload."""

    name = "echo"

    async def handle_item(self, item: Any) -> Any:
        return item


@pytest.fixture
async def served(db_path: Path) -> AsyncIterator[tuple[Runtime, MemoryObjectSendStream[None]]]:
    """A runtime serving Steps (paced by the stream given), Flaky (failing) and Echo."""
    send, receive = anyio.create_memory_object_stream[None](100)
    steps = Steps()
    steps.gate = receive
    rt = Runtime(db_path, queues=[steps, Flaky(), Echo()], serve=("127.0.0.1", 0), shutdown_grace=0)
    with send, receive:
        async with rt:
            yield rt, send


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js, installed from the npm registry into tests/.npm on first use."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("the accessibility tests install axe-core with npm: apt-get install npm")
        done = subprocess.run(
            [npm, "install", "--prefix", str(AXE_DIR), "--no-audit", "--no-fund", "axe-core@4"],
            timeout=300,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.fail(f"npm install axe-core@4 failed (the npm registry?): {done.stderr[-2000:]}")
    return AXE_JS.read_text()


async def serious_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """What axe-core finds on the page as it is now, with impact serious or critical.
    Injected through the DevTools protocol: the page's CSP allows no inline script."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(axe_source)
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}))"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


async def no_page_overflow(page: Page, width: int) -> None:
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide on a {width} px screen"


async def accept_dialogs(page: Page) -> list[str]:
    asked: list[str] = []

    async def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return asked


async def test_throughput_of_the_last_hour_comes_from_the_store_then_events(
    served: tuple[Runtime, Any], open_page: OpenPage
) -> None:
    rt, _ = served
    done = await rt.enqueue_many("echo", [{"n": n} for n in range(3)])
    failed = await rt.enqueue_many("flaky", [{}, {}])
    with anyio.fail_after(10):
        for job in [*done, *failed]:
            await rt.wait(job.id)

    # The JSON API: a count per minute, oldest first, the last one this minute's.
    status, body = await http_get(rt, "/api/throughput?minutes=5")
    assert status == 200
    assert body["minutes"] == 5
    assert set(body["queues"]) == {"steps", "flaky", "echo"}
    assert len(body["queues"]["echo"]["completed"]) == 5
    assert sum(body["queues"]["echo"]["completed"]) == 3
    assert sum(body["queues"]["flaky"]["failed"]) == 2
    assert sum(body["queues"]["flaky"]["completed"]) == 0
    status, body = await http_get(rt, "/api/throughput?queue=echo")
    assert (status, list(body["queues"]), body["minutes"]) == (200, ["echo"], 60)
    for query, code, says in [
        ("minutes=0", 400, "minutes"),
        ("minutes=1441", 400, "minutes"),
        ("minutes=soon", 400, "minutes"),
        ("queue=nope", 404, "nope"),
    ]:
        status, body = await http_get(rt, f"/api/throughput?{query}")
        assert status == code, query
        assert says in body["message"], body

    # A page opened now shows what happened before it, not 0/min.
    page = await open_page()
    await page.goto(page_url(rt))
    summary = page.locator("#throughput-summary")
    await expect(summary).to_contain_text("all queues: 3 completed, 2 failed", timeout=WAIT_MS)
    # The rates come with the stored counts (not with the cards' next redraw, 5 s later).
    assert await page.locator("#rate").inner_text() == "3 completed/min"
    assert await page.locator('.queue[data-queue="echo"] .rate').inner_text() == "3/min"
    await expect(page.locator("#throughput-chart rect.ok")).not_to_have_count(0)
    await expect(page.locator("#throughput-chart rect.bad")).not_to_have_count(0)

    # Then live, each completion counted once.
    later = await rt.enqueue("echo", {"n": 3})
    await expect(row(page, later.id).locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
    await expect(summary).to_contain_text("all queues: 4 completed, 2 failed", timeout=WAIT_MS)
    await expect(page.locator("#rate")).to_have_text("4 completed/min")
    await page.select_option("#filter-queue", "flaky")
    await expect(summary).to_contain_text("queue flaky: 0 completed, 2 failed", timeout=WAIT_MS)

    # Opened again, the store says the same as the events did.
    await page.reload()
    await page.select_option("#filter-queue", "")
    await expect(summary).to_contain_text("all queues: 4 completed, 2 failed", timeout=WAIT_MS)


async def test_after_a_reconnect_the_stored_throughput_and_the_replay_count_once(
    open_page: OpenPage, db_path: Path
) -> None:
    """On a reconnect the page reads the stored counts again and the server replays the
    events it missed: a job finished meanwhile is in both, and counted once."""
    port = free_port()

    def serving() -> Runtime:
        return Runtime(
            db_path, queues=[Echo(), Flaky()], serve=("127.0.0.1", port), shutdown_grace=0
        )

    page = await open_page()
    summary = page.locator("#throughput-summary")
    async with serving() as rt:
        first = await rt.enqueue("echo", {})
        await rt.wait(first.id, timeout=10)
        await page.goto(page_url(rt))
        await expect(summary).to_contain_text("1 completed, 0 failed", timeout=WAIT_MS)
        seen = await rt.enqueue("flaky", {})  # an event: where the page resumes from
        await expect(row(page, seen.id).locator(".badge")).to_have_text("failed", timeout=WAIT_MS)
        await expect(summary).to_contain_text("1 completed, 1 failed")
    await expect(page.locator("#conn")).to_contain_text("reconnecting", timeout=WAIT_MS)
    async with Runtime(db_path, queues=[Echo(), Flaky()], shutdown_grace=0) as offline:
        missed = await offline.enqueue_many("echo", [{}, {}])
        with anyio.fail_after(10):
            for job in missed:
                await offline.wait(job.id)
    async with serving():
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        for job in missed:  # the replay reached the page
            await expect(row(page, job.id).locator(".badge")).to_have_text(
                "completed", timeout=WAIT_MS
            )
        await expect(summary).to_contain_text("3 completed, 1 failed", timeout=WAIT_MS)
        await expect(page.locator("#rate")).to_have_text("3 completed/min")


async def test_failed_rows_show_their_error_and_search_by_creator_and_id_bulk_exactly(
    served: tuple[Runtime, Any], page: Page
) -> None:
    rt, _ = served
    bad = await rt.enqueue("flaky", {}, created_by="alice")
    assert (await rt.wait(bad.id, timeout=10)).status is JobStatus.FAILED
    alice = await rt.enqueue_many("echo", [{}, {}], delay=3600, created_by="alice")
    bob = await rt.enqueue("echo", {}, delay=3600, created_by="bob")
    asked = await accept_dialogs(page)
    await page.goto(page_url(rt))
    message = row(page, bad.id).locator(".message")
    await expect(message).to_have_text("RuntimeError: disk on fire", timeout=WAIT_MS)
    await expect(message).to_have_class(re.compile(r"\berror\b"))
    await expect(message).to_have_attribute("title", "RuntimeError: disk on fire")

    # By creator: the list, then new jobs as they come (their record says who made them).
    rows = page.locator("tr[data-job-id]")
    await page.get_by_label("created by").fill("alice")
    await page.get_by_label("created by").press("Enter")
    await expect(rows).to_have_count(3, timeout=WAIT_MS)
    await expect(row(page, bob.id)).to_have_count(0)
    bob_later = await rt.enqueue("echo", {}, delay=3600, created_by="bob")
    alice_later = await rt.enqueue("echo", {}, delay=3600, created_by="alice")
    await expect(row(page, alice_later.id)).to_be_visible(timeout=WAIT_MS)
    await expect(row(page, bob_later.id)).to_have_count(0)
    await expect(rows).to_have_count(4)

    # Bulk cancel takes exactly that set, after saying how many the server counts.
    await page.get_by_role("button", name="Cancel all matching").click()
    await expect(page.locator(".toast").last).to_have_text("cancelled 3 jobs", timeout=WAIT_MS)
    assert asked == ["Cancel 3 scheduled/queued/running jobs of every queue, created by alice?"]
    for job in [*alice, alice_later]:
        assert (await rt.job(job.id)).status is JobStatus.CANCELLED
    for job in (bob, bob_later):
        assert (await rt.job(job.id)).status is JobStatus.SCHEDULED
    await page.get_by_role("button", name="Rerun failed").click()
    await expect(page.locator(".toast").last).to_have_text("rerun 1 jobs", timeout=WAIT_MS)
    assert asked[-1] == "Rerun 1 failed job of every queue, created by alice?"

    # By id: that job alone is the set.
    await page.get_by_label("created by").fill("")
    await page.get_by_label("job id").fill(bob.id)
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(row(page, bob.id)).to_be_visible()
    await page.get_by_role("button", name="Cancel all matching").click()
    await expect(row(page, bob.id).locator(".badge")).to_have_text("cancelled", timeout=WAIT_MS)
    assert asked[-1] == f"Cancel 1 job: {bob.id} (scheduled)?"
    assert (await rt.job(bob_later.id)).status is JobStatus.SCHEDULED
    await page.get_by_label("job id").fill("01NOSUCHJOB")
    await page.get_by_label("job id").press("Enter")
    await expect(page.locator("#empty")).to_be_visible(timeout=WAIT_MS)
    await expect(rows).to_have_count(0)

    # What the page sends is checked where it enters: a typed refusal naming the field.
    status, body = await http_get(rt, "/api/jobs?created_by=" + "x" * 2000)
    assert status == 400
    assert "created_by" in body["message"]


async def test_tag_and_meta_filters_join_the_creator_search_and_the_bulk_buttons_say_why(
    served: tuple[Runtime, Any], page: Page
) -> None:
    """Creator, tag and meta together, on the list and on jobs that arrive by events; the
    bulk operations match by queue, status and creator only, so with a tag or meta filter
    their buttons are off and described by a note, unless a job id makes the set one job."""
    rt, _ = served

    async def later(created_by: str, tenant: str, tags: list[str]) -> str:
        job = await rt.enqueue(
            "echo", {}, delay=3600, created_by=created_by, meta={"tenant": tenant}, tags=tags
        )
        return job.id

    first = await later("alice", "acme", ["import"])
    other_tenant = await later("alice", "other", ["import"])
    bobs = await later("bob", "acme", ["import"])
    untagged = await later("alice", "acme", [])
    asked = await accept_dialogs(page)
    await page.goto(page_url(rt))
    rows = page.locator("tr[data-job-id]")
    await expect(rows).to_have_count(4, timeout=WAIT_MS)
    cancel = page.get_by_role("button", name="Cancel all matching")
    rerun = page.get_by_role("button", name="Rerun failed")
    await expect(page.locator("#bulk-note")).to_be_hidden()

    await page.get_by_label("created by").fill("alice")
    await page.get_by_label("tag", exact=True).fill("import")
    await page.get_by_label("meta", exact=True).fill("tenant=acme")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(row(page, first)).to_be_visible()
    await expect(row(page, first).locator(".tags")).to_have_text("import")
    for button in (cancel, rerun):
        await expect(button).to_be_disabled()
        await expect(button).to_have_accessible_description(re.compile("not by tag or meta"))
    await expect(page.locator("#bulk-note")).to_be_visible()

    # Jobs that arrive by events: shown once their record matches every filter.
    wrong_tenant = await later("alice", "other", ["import"])
    wrong_creator = await later("bob", "acme", ["import"])
    matching = await later("alice", "acme", ["import", "eu"])
    await expect(row(page, matching)).to_be_visible(timeout=WAIT_MS)
    await expect(rows).to_have_count(2)
    for job_id in (wrong_tenant, wrong_creator, other_tenant, bobs, untagged):
        await expect(row(page, job_id)).to_have_count(0)

    # Without the tag and meta filters the buttons are back, the note gone.
    await page.get_by_label("tag", exact=True).fill("")
    await page.get_by_label("meta", exact=True).fill("")
    await page.get_by_label("meta", exact=True).press("Enter")
    await expect(rows).to_have_count(5, timeout=WAIT_MS)  # alice's
    await expect(cancel).to_be_enabled()
    await expect(cancel).not_to_have_accessible_description(re.compile("tag or meta"))
    await expect(page.locator("#bulk-note")).to_be_hidden()

    # A job id with a tag filter: the set is that one job, checked against every filter.
    await page.get_by_label("tag", exact=True).fill("import")
    await page.get_by_label("job id").fill(untagged)
    await page.get_by_label("job id").press("Enter")
    await expect(page.locator("#empty")).to_be_visible(timeout=WAIT_MS)
    await expect(cancel).to_be_enabled()
    await cancel.click()
    await expect(page.locator(".toast").last).to_contain_text("matches the filters")
    assert (await rt.job(untagged)).status is JobStatus.SCHEDULED
    await page.get_by_label("job id").fill(first)
    await page.get_by_label("job id").press("Enter")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await cancel.click()
    await expect(row(page, first).locator(".badge")).to_have_text("cancelled", timeout=WAIT_MS)
    assert asked == [f"Cancel 1 job: {first} (scheduled)?"]
    for job_id in (matching, other_tenant, bobs, untagged, wrong_tenant, wrong_creator):
        assert (await rt.job(job_id)).status is JobStatus.SCHEDULED


async def test_big_results_are_cut_and_shown_or_saved_whole(
    served: tuple[Runtime, Any], page: Page, tmp_path: Path
) -> None:
    rt, _ = served
    payload = {"blob": "x" * 10_000}
    job = await rt.enqueue("echo", payload)
    small = await rt.enqueue("echo", {"small": True})
    with anyio.fail_after(10):
        await rt.wait(job.id)
        await rt.wait(small.id)
    await page.goto(page_url(rt) + f"#job={job.id}")
    result = page.locator("#detail-result")
    whole = json.dumps(payload, indent=2)
    await expect(result).to_have_text(whole[:4000] + "\n…", timeout=WAIT_MS)
    more = page.locator("#detail-result-more")
    await expect(more).to_contain_text(f"first 4,000 of {len(whole):,} characters")
    await page.get_by_role("button", name="show all of the result").click()
    await expect(result).to_have_text(whole, timeout=WAIT_MS)
    await page.get_by_role("button", name="show less of the result").click()
    await expect(result).to_have_text(whole[:4000] + "\n…", timeout=WAIT_MS)
    async with page.expect_download() as download:
        await page.get_by_role("button", name="download the whole result").click()
    saved = tmp_path / "result.json"
    await (await download.value).save_as(saved)
    assert json.loads(saved.read_text()) == payload
    assert (await download.value).suggested_filename == f"{job.id}-result.json"
    # A small value is shown as it is, with no such controls.
    await page.goto(page_url(rt) + f"#job={small.id}")
    await expect(result).to_have_text('{\n  "small": true\n}', timeout=WAIT_MS)
    await expect(more).to_have_count(0)


async def test_progress_bars_speak_and_the_table_and_job_view_take_the_keyboard(
    served: tuple[Runtime, Any], page: Page
) -> None:
    rt, step = served
    waiting = await rt.enqueue("echo", {}, delay=3600)
    job = await rt.enqueue("steps", {})
    await page.goto(page_url(rt))
    bar = row(page, job.id).get_by_role("progressbar", name=f"progress of job {job.id}")
    await expect(row(page, job.id).locator(".badge")).to_have_text("running", timeout=WAIT_MS)
    await expect(page.locator("#conn")).to_have_text("live")
    for _ in range(2):
        await step.send(None)
    await expect(bar).to_have_attribute("aria-valuenow", "50", timeout=WAIT_MS)
    await expect(bar).to_have_attribute("aria-valuetext", "50% (2 of 4)")
    await expect(bar).to_have_attribute("aria-valuemax", "100")
    idle = row(page, waiting.id).get_by_role("progressbar")
    await expect(idle).not_to_have_attribute("aria-valuenow", re.compile("."))
    await expect(idle).to_have_attribute("aria-valuetext", "no progress reported")

    # Rows newest first: the steps job, then the waiting one. Arrows move, Enter opens.
    await row(page, job.id).focus()
    await page.keyboard.press("ArrowDown")
    await expect(row(page, waiting.id)).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-title")).to_have_text(waiting.id, timeout=WAIT_MS)
    await expect(page.locator("#detail-title")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="close the job view")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#detail")).to_be_hidden()
    await expect(row(page, waiting.id)).to_be_focused()  # focus is back where it was
    await page.keyboard.press("ArrowUp")
    await expect(row(page, job.id)).to_be_focused()
    # The row's own buttons take their keys (Enter cancels, and opens no view).
    await row(page, job.id).get_by_role("button", name=f"cancel job {job.id}").press("Enter")
    await expect(row(page, job.id).locator(".badge")).to_have_text("cancelled", timeout=WAIT_MS)
    await expect(page.locator("#detail")).to_be_hidden()
    # A queue card filters from the keyboard too.
    name = page.get_by_role("button", name="show only the jobs of queue echo")
    await name.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#filter-queue")).to_have_value("echo")
    await expect(name).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)
    await expect(page.locator("tr[data-job-id]")).to_have_count(1, timeout=WAIT_MS)


@pytest.mark.parametrize("width", [1400, 420])
async def test_no_serious_accessibility_violation_and_a_phone_screen_fits(
    served: tuple[Runtime, Any], open_page: OpenPage, axe_source: str, width: int
) -> None:
    rt, step = served
    failed = await rt.enqueue("flaky", {"note": "x"}, created_by="ops", tags=["nightly"])
    big = await rt.enqueue("echo", {"blob": "y" * 6000}, meta={"tenant": "acme"})
    with anyio.fail_after(10):
        await rt.wait(failed.id)
        await rt.wait(big.id)
    await rt.enqueue("echo", {}, delay=3600)
    running = await rt.enqueue("steps", {})
    page = await open_page(width=width, height=900)
    await page.goto(page_url(rt))
    await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
    await step.send(None)
    await expect(row(page, running.id).locator(".pct")).to_have_text("25%", timeout=WAIT_MS)
    await expect(page.locator("#throughput-summary")).to_contain_text("1 completed, 1 failed")
    await expect(page.locator("#workers tr[data-worker]")).to_have_count(1, timeout=WAIT_MS)

    assert await serious_violations(page, axe_source) == []
    await no_page_overflow(page, width)
    # Every control can be reached and used (trial: the checks of a click, not the click).
    for control in [
        page.get_by_label("queue", exact=True),
        page.get_by_label("status"),
        page.get_by_label("job id"),
        page.get_by_label("created by"),
        page.get_by_label("tag", exact=True),
        page.get_by_label("meta", exact=True),
        page.get_by_role("button", name="Cancel all matching"),
        page.get_by_role("button", name="Rerun failed"),
        page.get_by_role("button", name="pause queue flaky"),
        row(page, running.id).get_by_role("button", name=f"cancel job {running.id}"),
        row(page, failed.id).get_by_role("button", name=f"rerun job {failed.id}"),
    ]:
        await control.click(trial=True, timeout=WAIT_MS)
        # Measured in the page in one go (the locator waits for the element): a live
        # update may replace a row between two calls, and bounding_box() then has none.
        box = await control.evaluate(
            "e => { const r = e.getBoundingClientRect(); return {x: r.x, width: r.width}; }",
            timeout=WAIT_MS,
        )
        assert box["x"] >= 0, box
        assert box["x"] + box["width"] <= width, box

    # The job view, over the page: a failed job's error, a big value's controls.
    await row(page, failed.id).locator(".id").click()
    await expect(page.locator("#detail-error")).to_have_text(
        "RuntimeError: disk on fire", timeout=WAIT_MS
    )
    assert await serious_violations(page, axe_source) == []
    await no_page_overflow(page, width)
    await page.get_by_role("button", name="close the job view").click(trial=True)
    await page.goto(page_url(rt) + f"#job={big.id}")
    await expect(page.get_by_role("button", name="show all of the result")).to_be_visible(
        timeout=WAIT_MS
    )
    await expect(page.locator("#detail-meta dd")).to_have_text(["acme"])
    assert await serious_violations(page, axe_source) == []
    await no_page_overflow(page, width)

    # A tag filter: the bulk buttons off, with the note that says why, on the page too.
    await page.get_by_role("button", name="close the job view").click()
    await page.get_by_label("tag", exact=True).fill("nightly")
    await page.get_by_label("tag", exact=True).press("Enter")
    await expect(page.locator("tr[data-job-id]")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#bulk-note")).to_be_visible()
    assert await serious_violations(page, axe_source) == []
    await no_page_overflow(page, width)
