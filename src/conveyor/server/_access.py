"""Who may use the server: the token and the browser's Origin, checked the same way by
the websockets server and the ASGI app (transport-neutral: plain headers and query)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from ._http import PUBLIC_PATHS, Reply, error_reply


class Access:
    """The token (None: none needed) and the Origins a browser may come from (None: the
    page's own origin, i.e. the Host it connected to)."""

    def __init__(self, token: str | None, allowed_origins: Sequence[str] | None) -> None:
        self.token = token
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)

    def refusal(
        self, path: str, headers: Mapping[str, str], query: Mapping[str, str], *, websocket: bool
    ) -> Reply | None:
        """The HTTP refusal for a request (None: let it in). ``path`` is relative to the
        server's root. The dashboard's files and the health check carry no data, so they
        need no token (the page asks for it); a websocket handshake always does."""
        public = path in PUBLIC_PATHS and not websocket
        if not public and not self._authorized(headers, query):
            return error_reply(401, "unauthorized", "missing or wrong token")
        if not self._origin_allowed(headers):
            return error_reply(403, "forbidden_origin", "this Origin is not allowed")
        return None

    def _authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if self.token is None:
            return True
        header = headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ").strip()
        else:
            offered = query.get("token", "")
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _origin_allowed(self, headers: Mapping[str, str]) -> bool:
        origin = headers.get("Origin")
        if origin is None:
            return True  # not a browser: the token (if any) is what protects us
        if self.allowed_origins is not None:
            return origin in self.allowed_origins
        host = headers.get("Host")
        return host is not None and urlsplit(origin).netloc == host
