"""The websocket server: one port for the protocol, the dashboard page and JSON reads.

It reads from the bus and calls the same Runtime API a user calls; it never reaches
into the engine.
"""

from __future__ import annotations

import functools
import http
import ipaddress
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._bus import EventStream, Sink
from .._logging import get_logger
from .._models import Event
from .._wire import event_frame
from ._access import Access
from ._api import ServedRuntime
from ._http import Reply, answer, headers, parse_query
from ._openapi import openapi_document
from ._session import Session

log = get_logger("conveyor.server")
# websockets' own records (a line per connection opened and closed, plain HTTP included):
# warnings and errors only, so that `conveyor serve` at INFO logs what matters.
_websockets_log = log.getChild("websockets")
_websockets_log.setLevel("WARNING")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """Serves one runtime on ``host:port`` (port 0 picks a free one).

    Security: a token is required whenever ``host`` is not a loopback address; clients
    send it as ``Authorization: Bearer <token>`` or ``?token=<token>``, else get HTTP 401.
    Only the dashboard page (which holds no data and asks for the token) and
    ``/healthz`` answer without it.
    A browser's ``Origin`` must be in ``allowed_origins`` (default: the page's own
    origin, i.e. the Host it connected to), else HTTP 403.

    Bounds: a request larger than ``max_message_bytes`` gets a ``too_large`` error reply
    (the connection stays open); frames beyond four times that are refused by the
    websocket layer itself (close code 1009). Each subscription buffers at most
    ``max_buffer`` events (see EventStream).
    """

    def __init__(
        self,
        runtime: ServedRuntime,
        host: str,
        port: int,
        *,
        token: str | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_message_bytes: int = 1 << 20,
        max_buffer: int = 1000,
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.access = Access(token, allowed_origins)
        self.max_message_bytes = max_message_bytes
        self.max_buffer = max_buffer
        self._fanout = _Fanout()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with serve(
            self._serve_connection,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=self.max_message_bytes * 4,
            close_timeout=2,
            logger=_websockets_log,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            log.info("serving on %s", self.url)
            task_status.started()
            await anyio.sleep_forever()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        # The request target is path?query (not a URL: urlsplit would read //x as a host).
        path, _, query_string = request.path.partition("?")
        query = parse_query(query_string)
        upgrade = "Upgrade" in request.headers
        refusal = self.access.refusal(path, request.headers, query, websocket=upgrade)
        if refusal is not None:
            return _response(refusal)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # go on with the websocket handshake
        accept = request.headers.get("Accept", "")
        reply = await answer(self.runtime, path, query_string, accept=accept, openapi=_openapi)
        return _response(reply)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        session = Session(
            self.runtime,
            _Connection(ws, self._fanout),
            max_message_bytes=self.max_message_bytes,
            max_buffer=self.max_buffer,
        )
        try:
            await session.run()
        except* ConnectionClosed:
            pass  # the client went (from the request loop or a forwarder): not an error


@functools.cache
def _openapi() -> bytes:
    return openapi_document("/")


def _response(reply: Reply) -> Response:
    status = http.HTTPStatus(reply.status)
    return Response(reply.status, status.phrase, Headers(headers(reply)), reply.body)


class _Fanout:
    """The server's bus Sink: writes an event to every idle subscribed connection with
    one ``websockets.broadcast`` per subscription id (most clients have one subscription,
    "s1"), so the frame is encoded once per event and no task wakes.

    ``broadcast`` itself never refuses a write: past its high-water mark a transport
    buffers without bound. So a connection with more than WRITE_LIMIT bytes waiting is
    left out here, and the event waits in that subscription's bounded buffer instead
    (see EventStream: progress coalesces, then the client is closed with 4008). A
    connection that is closing is skipped by ``broadcast``: it gets no more events.
    """

    WRITE_LIMIT = 64 * 1024

    def deliver(self, event: Event, streams: list[EventStream]) -> list[EventStream]:
        refused: list[EventStream] = []
        groups: dict[str, list[ServerConnection]] = {}
        limit = self.WRITE_LIMIT
        for stream in streams:
            sub, ws = stream.sink_key
            if ws.transport.get_write_buffer_size() > limit:
                refused.append(stream)
                continue
            group = groups.get(sub)
            if group is None:
                groups[sub] = [ws]
            else:
                group.append(ws)
        for sub, group in groups.items():
            broadcast(group, event_frame(sub, event), text=True)
        return refused


class _Connection:
    """A websockets connection as a Session's Connection."""

    def __init__(self, ws: ServerConnection, fanout: _Fanout) -> None:
        self.ws = ws
        self._fanout: tuple[Sink, Any] = (fanout, ws)

    @property
    def fanout(self) -> tuple[Sink, Any]:
        return self._fanout

    def messages(self) -> AsyncIterator[str | bytes]:
        return aiter(self.ws)

    async def send(self, frame: bytes) -> None:
        await self.ws.send(frame, text=True)

    async def close(self, code: int, reason: str, *, linger: float) -> None:
        self.ws.close_timeout = linger
        await self.ws.close(code, reason)
