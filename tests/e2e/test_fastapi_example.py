"""examples/fastapi_app.py, driven through its ASGI interface with its lifespan."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))


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
