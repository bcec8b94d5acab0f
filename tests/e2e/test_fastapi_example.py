"""examples/fastapi_app.py, driven through its ASGI interface with its lifespan, and
run as its comments say: under a real uvicorn server, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from ..conftest import wait_until

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO / "examples"))


def test_the_app_enqueues_and_reports_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_DB", str(tmp_path / "app.db"))
    from fastapi_app import app

    with TestClient(app) as client:  # runs the lifespan: the Runtime starts and stops
        started = client.post("/exports", json={"query": "sales"})
        assert started.status_code == 202
        job = started.json()["job"]
        assert (job["status"], job["created_by"]) == ("queued", "api")
        done = client.get(f"/jobs/{job['id']}", params={"wait": 10})
        assert done.status_code == 200
        body = done.json()
        assert body["status"] == "completed"
        assert body["result"] == {"download_url": "/downloads/sales.csv"}
        assert body["progress"] == {"current": 2, "total": 2, "message": "Writing CSV..."}
        assert client.get("/jobs/nope").status_code == 404
        assert client.post("/exports", json={"nope": 1}).status_code == 422


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _uvicorn(port: int, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "CONVEYOR_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_the_app_under_uvicorn(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # `uvicorn examples.fastapi_app:app`, from the repository's root, as the example says.
    server = _uvicorn(port, tmp_path / "app.db")

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError("uvicorn exited early")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        with anyio.fail_after(30):
            await wait_until(answers, 0.05)  # a child process's port: nothing to wait on
        status, started = await anyio.to_thread.run_sync(
            _http, "POST", f"{base}/exports", {"query": "sales"}
        )
        assert status == 202
        job = started["job"]
        assert (job["status"], job["created_by"]) == ("queued", "api")
        status, done = await anyio.to_thread.run_sync(
            _http, "GET", f"{base}/jobs/{job['id']}?wait=10"
        )
        assert (status, done["status"]) == (200, "completed")
        assert done["result"] == {"download_url": "/downloads/sales.csv"}
        missing, _ = await anyio.to_thread.run_sync(_http, "GET", f"{base}/jobs/nope")
        assert missing == 404
        server.send_signal(signal.SIGINT)  # uvicorn's graceful stop runs the lifespan's end
        with anyio.fail_after(30):
            await wait_until(lambda: server.poll() is not None, 0.05)
        output = server.stdout.read().decode() if server.stdout else ""
        assert server.returncode == 0, output
        assert "Application shutdown complete" in output
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)
        if server.stdout:
            server.stdout.close()
