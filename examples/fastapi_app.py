"""conveyor inside a FastAPI app: the Runtime lives in the app's lifespan, endpoints
await enqueue, and clients read job status (or watch it live on the websocket).

Run: pip install fastapi uvicorn && uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from conveyor import Job, JobNotFound, Queue, Runtime, WaitTimeout


class ExportQueue(Queue):
    name = "exports"
    worker_count = 2

    async def handle_item(self, item: dict[str, Any]) -> dict[str, str]:
        self.report_progress(current=1, total=2, message="Querying...")
        await anyio.sleep(0.05)  # stands in for the real query
        self.report_progress(current=2, total=2, message="Writing CSV...")
        return {"download_url": f"/downloads/{item['query']}.csv"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    db = os.environ.get("CONVEYOR_DB", "conveyor.db")
    # serve= also opens the live websocket and dashboard on their own port.
    async with Runtime(db, queues=[ExportQueue()]) as rt:
        app.state.rt = rt
        yield


app = FastAPI(lifespan=lifespan)


class ExportRequest(BaseModel):
    query: str


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _plain(job: Job) -> dict[str, Any]:
    plain: dict[str, Any] = msgspec.to_builtins(job)
    return plain


@app.post("/exports", status_code=202)
async def start_export(body: ExportRequest, request: Request) -> dict[str, Any]:
    job = await _runtime(request).enqueue("exports", {"query": body.query}, created_by="api")
    return {"job": _plain(job)}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request, wait: float = 0) -> dict[str, Any]:
    """The job; with ``?wait=SECONDS``, once it finished (or 408 if it did not in time)."""
    rt = _runtime(request)
    try:
        job = await rt.job_status("exports", job_id)
        if wait > 0:
            job = await rt.wait(job_id, timeout=wait)
    except JobNotFound:
        raise HTTPException(status_code=404, detail=f"no export job {job_id}") from None
    except WaitTimeout:
        raise HTTPException(status_code=408, detail="not finished yet") from None
    return _plain(job)
