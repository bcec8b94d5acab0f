"""conveyor.asgi through a real uvicorn server: a FastAPI app mounting conveyor under
/jobs/ behind the app's own authentication, reached by HTTP, by the Python Client, by a
raw websocket and by the dashboard in a real headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from playwright.async_api import Page, expect
from prometheus_client.metrics_core import Metric
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conveyor import JobStatus, Queue, Runtime, ServerError
from conveyor.asgi import create_app
from conveyor.client import Client
from conveyor.server._http import ENDPOINTS

from ..conftest import wait_until
from .asgi_app import SESSION, get, serving, user_app
from .test_dashboard import WAIT_MS, Steps, row
from .test_metrics import families, value
from .test_server import Work, http_get, read_to_eof, silent_subscriber

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


AUTH = {"Authorization": f"Bearer {SESSION}"}


class Export(Queue):
    """Three progress reports, then a result."""

    name = "exports"

    async def handle_item(self, item: Any) -> dict[str, Any]:
        for step in range(1, 4):
            self.report_progress(current=step, total=3, message=f"step {step}")
        return {"rows": item["rows"]}


@pytest.fixture
async def mounted(db_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    """The runtime and the URL of the mount (``http://127.0.0.1:PORT/jobs/``)."""
    rt = Runtime(db_path, queues=[Export()], shutdown_grace=0)
    async with serving(user_app(rt)) as base:
        yield rt, base + "/jobs/"


async def test_the_apps_own_authentication_guards_every_path_under_the_mount(
    mounted: tuple[Runtime, str],
) -> None:
    url = mounted[1]
    for path in ("", "app.js", "api/queues", "api/jobs", "healthz", "openapi.json", "metrics"):
        status, headers, body = await get(url + path)
        assert status == 401, path
        assert body == {"error": "unauthorized", "message": "log in first"}, path
        assert headers["www-authenticate"] == "Bearer"  # the app's HTTPException's headers
    for token in (None, "wrong"):
        with pytest.raises(ServerError, match="http_401"):
            async with Client(url, token=token):
                pass
    # The app's own route and the mount take the same credentials.
    assert (await get(url.removesuffix("jobs/") + "me", AUTH))[2] == {"user": "alice"}
    status, _, page_html = await get(url, {"Cookie": f"session={SESSION}"})
    assert status == 200
    assert "<title>conveyor</title>" in page_html
    # The mount without its slash: the app redirects to it (relative URLs need it).
    status, headers, _ = await get(url.removesuffix("/"), AUTH)
    assert (status, headers["location"]) == (307, url)


async def test_the_json_api_answers_as_the_standalone_server_does(
    mounted: tuple[Runtime, str],
) -> None:
    rt, url = mounted
    job = await rt.enqueue("exports", {"rows": 2})
    await rt.wait(job.id, timeout=10)
    status, _, body = await get(url + "api/jobs?queue=exports", AUTH)
    assert status == 200
    assert [j["id"] for j in body["jobs"]] == [job.id]
    assert body["cursor"] is None
    status, _, body = await get(url + f"api/jobs/{job.id}", AUTH)
    assert (status, body["result"]) == (200, {"rows": 2})
    status, _, body = await get(url + "api/queues", AUTH)
    assert body["queues"]["exports"]["completed"] == 1
    status, _, body = await get(url + "api/workers", AUTH)
    assert [w["queues"] for w in body["workers"]] == [{"exports": 1}]
    assert (await get(url + "healthz", AUTH))[2] == {"status": "ok"}
    for path, code, says in [
        ("api/jobs/nope", 404, "nope"),
        ("nothing-here", 404, "/nothing-here"),
        ("api/jobs?status=asleep", 400, "status"),
        ("api/jobs?limit=abc", 400, "limit"),
        ("api/jobs?limit=0", 400, "limit"),
        ("api/jobs?queue=nope", 404, "nope"),
    ]:
        status, _, body = await get(url + path, AUTH)
        assert status == code, path
        assert says in body["message"], path


async def test_metrics_answer_under_the_mount_and_count_its_websocket_clients(
    mounted: tuple[Runtime, str],
) -> None:
    rt, url = mounted
    job = await rt.enqueue("exports", {"rows": 1})
    await rt.wait(job.id, timeout=10)

    async def scraped() -> dict[str, Metric]:
        status, headers, body = await get(url + "metrics", AUTH)
        assert status == 200, body
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return families(body)

    found = await scraped()
    assert value(found, "conveyor_runs_completed_total", queue="exports") == 1
    assert value(found, "conveyor_jobs", queue="exports", status="completed") == 1
    assert value(found, "conveyor_websocket_clients") == 0
    ws_url = url.replace("http://", "ws://")
    with anyio.fail_after(20):
        async with (
            connect(ws_url, additional_headers=AUTH) as first,
            connect(ws_url, additional_headers=AUTH),
        ):
            await wait_until(lambda: rt.stats.websocket_clients == 2)
            assert value(await scraped(), "conveyor_websocket_clients") == 2
            await first.close()
            await wait_until(lambda: rt.stats.websocket_clients == 1)
        await wait_until(lambda: rt.stats.websocket_clients == 0)
    assert value(await scraped(), "conveyor_websocket_clients") == 0
    # OpenMetrics when the scraper asks for it, as on conveyor's own server.
    status, headers, body = await get(
        url + "metrics", AUTH | {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert "conveyor_jobs" in body


async def test_metrics_without_the_metrics_extra_say_what_to_install(
    mounted: tuple[Runtime, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus-client is installed here (dev extra), so its absence is staged: a None
    entry in sys.modules for the module that imports it, before this runtime's first
    scrape (tests/server/test_metrics.py stages it in a fresh process)."""
    monkeypatch.setitem(sys.modules, "conveyor._prometheus", None)
    status, _, body = await get(mounted[1] + "metrics", AUTH)
    assert status == 501
    assert body["error"] == "not_installed"
    assert "pip install 'conveyor[metrics]'" in body["message"]


async def test_the_python_client_enqueues_and_watches_through_the_mount(
    mounted: tuple[Runtime, str],
) -> None:
    rt, url = mounted
    async with Client(url.replace("http://", "ws://"), token=SESSION) as client:
        job = await client.enqueue("exports", {"rows": 7}, created_by="alice")
        seen: list[tuple[JobStatus, int]] = []
        with anyio.fail_after(20):
            async for event in client.events(job_id=job.id):
                seen.append((event.status, event.progress.current))
                if event.status.is_terminal:
                    break
        assert seen[-1][0] is JobStatus.COMPLETED
        done = await client.job(job.id)
        assert done.result == {"rows": 7}
        assert done.created_by == "alice"
        assert [j.id for j in await client.list_jobs(queue="exports")] == [job.id]
    assert (await rt.job(job.id)).status is JobStatus.COMPLETED


async def test_a_websocket_from_another_sites_page_is_refused(
    mounted: tuple[Runtime, str],
) -> None:
    """The user's cookies ride along with any page's websocket: the Origin must be the
    page's own, as on conveyor's own server."""
    ws_url = mounted[1].replace("http://", "ws://")
    cookie = {"Cookie": f"session={SESSION}"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url, additional_headers=cookie, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    host = ws_url.split("/")[2]
    async with connect(ws_url, additional_headers=cookie, origin=f"http://{host}") as ws:
        await ws.send(json.dumps({"id": 1, "op": "queue_counts"}))
        with anyio.fail_after(10):
            reply = json.loads(await ws.recv())
        assert reply["type"] == "result"
        await ws.send("x" * (2 << 20))
        with anyio.fail_after(10):
            reply = json.loads(await ws.recv())
        assert reply["code"] == "too_large"  # and the connection stays open:
        await ws.send(json.dumps({"id": 2, "op": "job_status", "job_id": "nope"}))
        with anyio.fail_after(10):
            assert json.loads(await ws.recv())["code"] == "unknown_job"


async def test_openapi_document_describes_every_endpoint_and_its_replies(
    mounted: tuple[Runtime, str], tmp_path: Path
) -> None:
    rt, url = mounted
    status, _, doc = await get(url + "openapi.json", AUTH)
    assert status == 200
    validate_openapi(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": "/jobs/"}]
    assert {e.path for e in ENDPOINTS} | {"/", "/metrics", "/openapi.json"} == set(doc["paths"])
    job = await rt.enqueue("exports", {"rows": 1})
    await rt.wait(job.id, timeout=10)
    for endpoint in ENDPOINTS:
        path = endpoint.path.replace("{job_id}", job.id)
        status, _, body = await get(url + path.lstrip("/"), AUTH)
        assert status == 200, path
        reply = doc["paths"][endpoint.path]["get"]["responses"]["200"]
        schema = reply["content"]["application/json"]["schema"]
        _conforms(doc, schema, body)
        for param in doc["paths"][endpoint.path]["get"]["parameters"]:
            assert param["schema"], (path, param)
    status, _, body = await get(url + "api/jobs?limit=abc", AUTH)
    _conforms(
        doc,
        doc["paths"]["/api/jobs"]["get"]["responses"]["400"]["content"]["application/json"][
            "schema"
        ],
        body,
    )
    # A body that does not fit its schema is caught (the check can fail).
    with pytest.raises(jsonschema.ValidationError):
        _conforms(doc, {"$ref": "#/components/schemas/Job"}, {"id": 1})
    # conveyor's own server serves the same document, rooted at /.
    own_db = tmp_path / "own.db"
    async with Runtime(own_db, queues=[Export()], serve=("127.0.0.1", 0)) as own:
        status, standalone = await http_get(own, "/openapi.json")
    assert status == 200
    assert standalone == doc | {"servers": [{"url": "/"}]}


async def test_jobs_filter_by_tag_and_meta_under_the_mount_as_documented(
    mounted: tuple[Runtime, str],
) -> None:
    """The /api/jobs query (tag= repeated, meta.KEY=) is parsed by the one endpoint table
    both transports serve, and the OpenAPI document says how it is written."""
    rt, url = mounted
    both = await rt.enqueue("exports", {"rows": 1}, tags=["import", "daily"], meta={"t": "acme"})
    await rt.enqueue("exports", {"rows": 2}, tags=["import"], meta={"t": "acme"})
    await rt.enqueue("exports", {"rows": 3}, tags=["import", "daily"], meta={"t": "other"})
    status, _, body = await get(url + "api/jobs?tag=import&tag=daily&meta.t=acme", AUTH)
    assert status == 200, body
    assert [j["id"] for j in body["jobs"]] == [both.id]
    assert body["jobs"][0]["tags"] == ["import", "daily"]
    for query, says in [("tag=", "tag"), ("meta=acme", "meta.KEY"), ("meta.t=a&meta.t=b", "t")]:
        status, _, body = await get(url + "api/jobs?" + query, AUTH)
        assert status == 400, query
        assert says in body["message"], query
    doc = (await get(url + "openapi.json", AUTH))[2]["paths"]["/api/jobs"]["get"]
    (tag,) = [p for p in doc["parameters"] if p["name"] == "tag"]
    assert tag["schema"] == {"type": "array", "items": {"type": "string"}}
    assert "meta.KEY=VALUE" in doc["description"]


def _conforms(doc: dict[str, Any], schema: dict[str, Any], body: Any) -> None:
    """``body`` against ``schema``, its $refs resolved in the document's components."""
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)


async def test_token_and_middleware_options_of_the_mounted_app(db_path: Path) -> None:
    """Without the app's authentication: conveyor's token, as its own server asks it; and
    a Starlette middleware passed in, whose user ``authenticate`` reads."""

    class Header(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, SimpleUser] | None:
            name = conn.headers.get("x-user")
            return None if name is None else (AuthCredentials(["jobs"]), SimpleUser(name))

    def login_first(conn: HTTPConnection) -> None:
        if conn.scope["type"] == "websocket":
            raise HTTPException(403, "not for you")
        raise HTTPException(303, "log in", headers={"Location": "/login"})

    rt = Runtime(db_path, queues=[Export()], shutdown_grace=0)
    app = Starlette(
        routes=[
            Mount("/tokened", create_app(rt, token="t0ken")),
            Mount("/login-first", create_app(rt, authenticate=login_first)),
            Mount(
                "/users",
                create_app(
                    rt,
                    middleware=[Middleware(AuthenticationMiddleware, backend=Header())],
                    authenticate=lambda conn: conn.user.is_authenticated,
                ),
            ),
        ]
    )
    async with rt, serving(app) as base:
        tokened = base + "/tokened/"
        assert (await get(tokened))[0] == 200  # the page holds no data: it asks for the token
        assert (await get(tokened + "api/queues"))[0] == 401
        assert (await get(tokened + "api/queues?token=t0ken"))[0] == 200
        assert (await get(tokened + "api/queues", {"Authorization": "Bearer t0ken"}))[0] == 200
        async with Client(tokened, token="t0ken") as client:
            assert set(await client.queue_counts()) == {"exports"}
        with pytest.raises(ServerError, match="http_401"):
            async with Client(tokened):
                pass
        users = base + "/users/"
        status, _, body = await get(users + "api/queues")
        assert (status, body["message"]) == (401, "refused by the app's authentication")
        assert (await get(users + "api/queues", {"X-User": "bob"}))[0] == 200
        status, headers, body = await get(base + "/login-first/")
        assert (status, headers["location"], body["error"]) == (303, "/login", "refused")
        with pytest.raises(ServerError, match="http_403"):
            async with Client(base + "/login-first/"):
                pass


async def test_dashboard_under_the_mount_shows_live_progress(page: Page, db_path: Path) -> None:
    send, receive = anyio.create_memory_object_stream[None](10)
    steps = Steps()
    steps.gate = receive
    rt = Runtime(db_path, queues=[steps], shutdown_grace=0)
    with send, receive:
        async with serving(user_app(rt)) as base:
            await page.context.add_cookies([{"name": "session", "value": SESSION, "url": base}])
            await page.goto(base + "/jobs/")
            await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
            job = await rt.enqueue("steps", {"n": 1})
            bar = row(page, job.id)
            await expect(bar.locator(".badge")).to_have_text("running", timeout=WAIT_MS)
            for pct in ("25%", "50%", "75%"):
                await send.send(None)
                await expect(bar.locator(".pct")).to_have_text(pct, timeout=WAIT_MS)
            await send.send(None)
            await expect(bar.locator(".badge")).to_have_text("completed", timeout=WAIT_MS)
            # A cancel from the page goes over the mounted websocket.
            second = await rt.enqueue("steps", {"n": 2})
            await expect(row(page, second.id).locator(".badge")).to_have_text(
                "running", timeout=WAIT_MS
            )
            await row(page, second.id).get_by_role("button", name="Cancel").click()
            await expect(row(page, second.id).locator(".badge")).to_have_text(
                "cancelled", timeout=WAIT_MS
            )
            assert (await rt.job(second.id)).status is JobStatus.CANCELLED


def test_import_conveyor_loads_no_starlette_and_the_asgi_module_says_what_to_install() -> None:
    code = "import sys, conveyor, conveyor.server; print('starlette' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "try:\n"
        "    import conveyor.asgi\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "pip install 'conveyor[asgi]'" in out.stdout, out.stderr


async def test_the_docs_sample_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/asgi.md's FastAPI sample, as printed, served by uvicorn."""
    doc = (Path(__file__).parents[2] / "docs" / "asgi.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)[0]
    monkeypatch.chdir(tmp_path)  # its jobs.db lands here
    sample: dict[str, Any] = {"__name__": "asgi_sample"}
    exec(compile(code, "docs/asgi.md", "exec"), sample)
    async with serving(sample["app"]) as base:
        assert (await get(base + "/jobs/api/queues"))[0] == 401
        assert (await get(base + "/me", {"Authorization": "Bearer s3cret"}))[2] == {"user": "alice"}
        async with Client(base + "/jobs/", token="s3cret") as client:
            job = await client.enqueue("exports", {"rows": 3})
            done = await client.wait(job.id, timeout=20)
        assert (done.status, done.result) == (JobStatus.COMPLETED, {"rows": 3})


async def test_a_client_that_never_reads_is_dropped_and_stalls_nobody(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The session's bounded buffers hold over ASGI too: uvicorn's send waits while its
    write buffer is full, the subscription's buffer overflows, and the session closes the
    stuck client with 4008 while another client hears every event."""
    rt = Runtime(db_path, queues=[Work()], shutdown_grace=0)
    async with serving(user_app(rt, max_buffer=600), send_buffer=4096) as base:
        url = base.replace("http://", "ws://") + "/jobs/"
        stuck = await anyio.to_thread.run_sync(
            silent_subscriber, url, f"Authorization: Bearer {SESSION}\r\n"
        )
        async with connect(url, additional_headers=AUTH, max_size=None) as good:
            await good.send(json.dumps({"id": 1, "op": "subscribe", "statuses": ["completed"]}))
            assert json.loads(await good.recv())["type"] == "result"
            received = b""

            async def drain_once_dropped() -> None:
                nonlocal received
                await wait_until(lambda: "fell more than 600" in caplog.text)
                received = await anyio.to_thread.run_sync(read_to_eof, stuck)

            with anyio.fail_after(60), stuck:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain_once_dropped)
                    jobs = await rt.enqueue_many("work", [{"n": i} for i in range(3000)])
                    for _ in jobs:
                        assert json.loads(await good.recv())["status"] == "completed"
    close_frame = b"\x88" + bytes([2 + len(b"too slow: event buffer overflowed")])
    assert close_frame + (4008).to_bytes(2, "big") + b"too slow" in received[-64:]
