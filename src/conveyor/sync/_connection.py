"""The blocking client's connections: opening one (a failed handshake raised as the async
client's errors are) and, for requests, a connection with its reader thread and the
requests awaiting its replies."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from .._calls import Replies, auth_headers
from ..client import CLOSE_TIMEOUT, open_failure


class Endpoint(Protocol):
    """Where and how a connection goes: what of its Client a connection reads."""

    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str | None: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def request_timeout(self) -> float: ...


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def connect_to(client: Endpoint, timeout: float | None) -> ClientConnection:
    ws = connect(
        client.url,
        additional_headers=auth_headers(client.token),
        open_timeout=timeout,
        close_timeout=CLOSE_TIMEOUT,
        max_size=client.max_message_bytes,
    )
    # Entered (it returns itself): the connection is this module's to close, as
    # websockets (17.1 on) asks of one not used in a ``with`` block.
    return ws.__enter__()


def open_for_requests(client: Endpoint, timeout: float | None) -> ClientConnection:
    """A connection for requests: a failed handshake is the async client's ServerError."""
    try:
        return connect_to(client, timeout)
    except Exception as exc:
        failure = open_failure(exc, client.url)
        if failure is None:
            raise
        raise failure from exc


class RequestConnection:
    """One websocket with its reader thread and the requests awaiting its replies. A
    table per connection: one that ends fails its own requests, never a newer one's."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.replies: Replies[threading.Event] = Replies(threading.Event)
        self.reader = threading.Thread(target=self._read, name="conveyor-client", daemon=True)
        self.reader.start()

    @property
    def is_open(self) -> bool:
        return self.ws.protocol.state is State.OPEN and self.reader.is_alive()

    def _read(self) -> None:
        try:
            for message in self.ws:
                self.replies.deliver(message)
        except ConnectionClosed:
            pass
        finally:
            self.replies.fail_all("disconnected", "the connection to the server closed")

    def close(self) -> None:
        self.ws.close()
        self.reader.join(CLOSE_TIMEOUT)
