"""conveyor's server as an ASGI app, to mount in a FastAPI or Starlette app (the ``asgi``
extra)::

    app = FastAPI(lifespan=lifespan)   # the lifespan enters the Runtime: `async with rt`
    app.mount("/jobs", create_app(rt, authenticate=current_user))

It is a second transport for the same server: the dashboard, the JSON API, ``/metrics``,
``/openapi.json`` and the websocket protocol (docs/protocol.md) are served by the very
code conveyor's own websockets server runs (conveyor.server), every path relative to the
mount. See docs/asgi.md.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from ._errors import ValidationError
from ._limits import integer, shown, text
from ._runtime import Runtime
from .server._access import Access
from .server._http import Reply, answer, error_reply, headers, parse_query
from .server._openapi import openapi_document
from .server._session import Session

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError("conveyor.asgi needs Starlette: pip install 'conveyor[asgi]'") from exc

__all__ = ("Authenticate", "create_app")

Authenticate = Callable[[HTTPConnection], Any]
"""The app's own authentication: called with each request under the mount (a Starlette
``Request``, or a ``WebSocket`` for the websocket handshake; both are ``HTTPConnection``:
``headers``, ``cookies``, ``query_params``, ``user``, ``session``, ...), sync or async.
It refuses by raising ``HTTPException`` (Starlette's, or FastAPI's, which is one): its
status, message and headers are answered (401, 403, a 303 to a login page, ...), or by
returning ``False`` (401). Anything else it returns lets the request in."""

MAX_MESSAGE_BYTES: Final = 1 << 30
_REFUSAL_CODES: Final = {401: "unauthorized", 403: "forbidden"}  # else "refused"
MAX_BUFFER: Final = 1_000_000


def create_app(
    rt: Runtime,
    *,
    authenticate: Authenticate | None = None,
    middleware: Sequence[Middleware] = (),
    token: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    max_message_bytes: int = 1 << 20,
    max_buffer: int = 1000,
) -> Starlette:
    """A Starlette app serving ``rt``: mount it at any path of your app.

    ``authenticate`` guards every request under the mount, the dashboard's files and the
    websocket included (see :data:`Authenticate`). ``middleware`` wraps the app (e.g.
    Starlette's ``AuthenticationMiddleware``, which ``authenticate`` can then read as
    ``conn.user``); a middleware of your app around the mount guards it too.
    ``token``, ``allowed_origins``, ``max_message_bytes`` and ``max_buffer`` are those of
    conveyor's own server (conveyor.server.Server): a token asked of every request but
    the dashboard's files and ``/healthz``; a browser's ``Origin`` must be the page's own
    (the Host it asked) or one of ``allowed_origins``, so a page of another site cannot
    use the websocket with your users' cookies.

    The runtime is yours to start and stop (``async with rt`` in your app's lifespan:
    Starlette runs no lifespan of a mounted app); until it runs, requests answer 503.
    """
    if not isinstance(rt, Runtime):
        raise ValidationError(f"rt must be a conveyor.Runtime, not {type(rt).__name__}")
    if authenticate is not None and not callable(authenticate):
        raise ValidationError(f"authenticate must be callable, not {type(authenticate).__name__}")
    if isinstance(middleware, (str, bytes)) or not isinstance(middleware, Sequence):
        raise ValidationError(f"middleware must be a list of Middleware, not {shown(middleware)}")
    for item in middleware:
        if not isinstance(item, Middleware):
            raise ValidationError(f"middleware must hold Middleware(...) items, not {shown(item)}")
    if token is not None and not text("token", token, 4096):
        raise ValidationError("token must not be empty (None: no token)")
    if allowed_origins is not None:
        if isinstance(allowed_origins, str) or not isinstance(allowed_origins, Sequence):
            raise ValidationError(
                f"allowed_origins must be a list of origins, not {shown(allowed_origins)}"
            )
        for origin in allowed_origins:
            text("allowed_origins", origin, 4096)
    served = _Served(
        rt,
        Access(token, allowed_origins),
        authenticate,
        integer("max_message_bytes", max_message_bytes, 1, MAX_MESSAGE_BYTES),
        integer("max_buffer", max_buffer, 1, MAX_BUFFER),
    )
    app = Starlette(
        routes=[
            WebSocketRoute("/", served.websocket),
            Route("/{path:path}", served.http, methods=["GET"]),
        ],
        middleware=list(middleware),
    )
    # Every path is the server's to answer, as conveyor's own server does. Starlette would
    # redirect a path its route regex misses (a "\n" before the last slash: "." stops at
    # it) to the slash-less twin that "$" matches before a final newline.
    app.router.redirect_slashes = False
    return app


class _Served:
    """The two endpoints: plain HTTP (everything under the mount) and the websocket
    (at the mount's root, as ``ws://host/jobs/``)."""

    def __init__(
        self,
        rt: Runtime,
        access: Access,
        authenticate: Authenticate | None,
        max_message_bytes: int,
        max_buffer: int,
    ) -> None:
        self.rt = rt
        self.access = access
        self.authenticate = authenticate
        self.max_message_bytes = max_message_bytes
        self.max_buffer = max_buffer

    async def http(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        refused = await self._refusal(request, path, websocket=False)
        if refused is not None:
            return refused
        root = request.scope.get("root_path", "") + "/"
        reply = await answer(
            self.rt,
            path,
            request.url.query,
            accept=request.headers.get("Accept", ""),
            openapi=functools.partial(_openapi, root),
        )
        return _response(reply)

    async def websocket(self, ws: WebSocket) -> None:
        refused = await self._refusal(ws, "/", websocket=True)
        if refused is not None:
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(refused)
            else:  # the server cannot answer a handshake with a status: a close (403)
                await ws.close(1008, "refused")
            return
        await ws.accept()
        connection = _Connection(ws)
        session = Session(
            self.rt,
            connection,
            max_message_bytes=self.max_message_bytes,
            max_buffer=self.max_buffer,
        )
        try:
            await session.run()
        except* (_Gone, WebSocketDisconnect):
            pass  # the client went (from the request loop or a forwarder): not an error
        if not connection.closed:
            await connection.close(1000, "", linger=2)

    async def _refusal(
        self, conn: HTTPConnection, path: str, *, websocket: bool
    ) -> Response | None:
        """The app's own authentication first, then conveyor's token and Origin rules."""
        if self.authenticate is not None:
            try:
                verdict = self.authenticate(conn)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
            except HTTPException as exc:
                code = _REFUSAL_CODES.get(exc.status_code, "refused")
                detail = exc.detail if isinstance(exc.detail, str) else shown(exc.detail)
                return _response(error_reply(exc.status_code, code, detail), exc.headers)
            if verdict is False:
                return _response(
                    error_reply(401, "unauthorized", "refused by the app's authentication")
                )
        query = parse_query(conn.url.query)
        refusal = self.access.refusal(path, conn.headers, query, websocket=websocket)
        return None if refusal is None else _response(refusal)


@functools.lru_cache(maxsize=16)
def _openapi(root: str) -> bytes:
    """The document for a mount (few: the app's mount paths)."""
    return openapi_document(root)


def _response(reply: Reply, extra: Any = None) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.headers.update(dict(headers(reply)) | dict(extra or {}))
    return response


class _Gone(Exception):
    """A send on a websocket that has closed."""


class _Connection:
    """A Starlette WebSocket as a Session's Connection. ASGI has no write that does not
    wait, so every event takes the buffered path (``fanout`` is None); ``send`` waits
    while the server's write buffer is full (uvicorn pauses it past its high-water mark),
    which is the backpressure the session's bounded buffers count on."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.closed = False

    async def messages(self) -> AsyncIterator[str | bytes]:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return
            data = message.get("text")
            yield data if data is not None else message.get("bytes") or b""

    async def send(self, frame: bytes) -> None:
        if self.closed:
            raise _Gone
        await self.ws.send({"type": "websocket.send", "text": frame.decode()})

    @property
    def fanout(self) -> None:
        return None

    async def close(self, code: int, reason: str, *, linger: float) -> None:
        # The ASGI server gives the client its own close timeout; linger is not ours to set.
        if self.closed:
            return
        self.closed = True
        try:
            await self.ws.close(code, reason)
        except (WebSocketDisconnect, OSError):
            pass  # gone already
