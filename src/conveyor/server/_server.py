"""The websocket server: one port for the protocol, the dashboard page and JSON reads.

It reads from the bus and calls the same Runtime API a user calls; it never reaches
into the engine.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import TaskStatus
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from .._logging import get_logger
from ._api import ServedRuntime
from ._http import PUBLIC_PATHS, error_response, route
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
        self.token = token
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self.max_message_bytes = max_message_bytes
        self.max_buffer = max_buffer

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

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ").strip()
        else:
            offered = parse_qs(urlsplit(request.path).query).get("token", [""])[-1]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _origin_allowed(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser: the token (if any) is what protects us
        if self.allowed_origins is not None:
            return origin in self.allowed_origins
        host = request.headers.get("Host")
        return host is not None and urlsplit(origin).netloc == host

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        # The page and the health check carry no data: the page asks for the token.
        public = path in PUBLIC_PATHS and "Upgrade" not in request.headers
        if not public and not self._authorized(request):
            return error_response(401, "unauthorized", "missing or wrong token")
        if not self._origin_allowed(request):
            return error_response(403, "forbidden_origin", "this Origin is not allowed")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # go on with the websocket handshake
        return await route(self.runtime, request)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        stats = self.runtime.stats
        stats.websocket_clients += 1
        try:
            await Session(
                self.runtime,
                ws,
                max_message_bytes=self.max_message_bytes,
                max_buffer=self.max_buffer,
            ).run()
        finally:
            stats.websocket_clients -= 1
