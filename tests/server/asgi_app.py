"""A user's FastAPI app that mounts conveyor under /jobs/ behind its own authentication,
and a real uvicorn server for it on a free loopback port (in the test's event loop)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from starlette.requests import HTTPConnection

from conveyor import Runtime
from conveyor.asgi import create_app

SESSIONS = {"s3cret-alice": "alice"}  # the app's own sessions: id -> user
SESSION = "s3cret-alice"


async def current_user(conn: HTTPConnection) -> str:
    """The app's own authentication, a FastAPI dependency: a session cookie (browsers) or
    a bearer token (API clients)."""
    auth = conn.headers.get("authorization", "")
    session = conn.cookies.get("session") or auth.removeprefix("Bearer ").strip()
    user = SESSIONS.get(session)
    if user is None:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return user


def user_app(rt: Runtime, **options: Any) -> FastAPI:
    """The app: its lifespan runs the runtime; its own route and the mount share one
    dependency for authentication."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rt:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/me")
    async def me(user: str = Depends(current_user)) -> dict[str, str]:
        return {"user": user}

    app.mount("/jobs", create_app(rt, authenticate=current_user, **options))
    return app


@asynccontextmanager
async def serving(app: Any, send_buffer: int | None = None) -> AsyncIterator[str]:
    """``app`` served by uvicorn until the block ends; yields ``http://127.0.0.1:PORT``.
    ``send_buffer``: the kernel's send buffer of each connection, in bytes (Linux gives
    accepted sockets the listening socket's), so a client that stops reading fills it
    soon."""
    sock = socket.socket()
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(20):
                await server.up.wait()
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET ``url``: its status, headers and body (JSON decoded when it is JSON)."""

    def fetch() -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(url, headers=headers or {})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=10) as response:
                return _read(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return _read(exc.code, dict(exc.headers), exc.read())

    return await anyio.to_thread.run_sync(fetch)


def _read(status: int, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
    kind = headers.get("content-type") or headers.get("Content-Type") or ""
    return status, headers, json.loads(body) if "json" in kind else body.decode()


class _Server(uvicorn.Server):
    """uvicorn's server, with an event for its start (the app's lifespan included)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.up.set()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as they are, so a test sees them."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
