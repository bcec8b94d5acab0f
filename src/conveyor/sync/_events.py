"""The blocking client's live events: an iterator on a connection of its own that
subscribes, reads and reconnects with the feed's backoff (conveyor._calls' EventFeed,
shared with the async client)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Self

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection

from .._calls import EventFeed
from .._errors import WaitTimeout
from .._models import Event
from ..client import open_failure
from ._closing import Closing
from ._connection import Endpoint, connect_to, remaining


class Events(Closing, Iterator[Event]):
    """A blocking iterator of live events (see Client.events). Close it, or leave its
    ``with`` block, to drop its connection; closing from another thread ends a blocked
    ``next()`` at once."""

    def __init__(self, client: Endpoint, feed: EventFeed, timeout: float | None = None) -> None:
        self._client = client
        self._feed = feed
        self.timeout = timeout
        self.deadline: float | None = None  # an overall deadline (wait() sets it)
        self._ws: ClientConnection | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> Self:
        # Subscribed before the block's body runs: what it enqueues is seen. (Iterated
        # without ``with``, it subscribes on the first next().)
        if self._ws is None:
            try:
                self._ws = _subscribe(self._client, self._feed, None)
            except Exception as exc:
                failure = open_failure(exc, self._client.url)
                if failure is None:
                    raise
                raise failure from exc
        return self

    def close(self) -> None:
        """Stop: drop the connection; a next() blocked in another thread ends."""
        self._stopped.set()
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def __next__(self) -> Event:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        if self.deadline is not None:
            deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        while not self._stopped.is_set():
            if self._ws is None:
                try:
                    ws = _subscribe(self._client, self._feed, remaining(deadline))
                except InvalidStatus as exc:
                    self._feed.refused(exc.response.status_code)  # raises for 401 and 403
                    self._reconnect_after(exc, deadline)
                    continue
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    self._reconnect_after(exc, deadline)
                    continue
                self._ws = ws
                if self._stopped.is_set():  # closed from another thread meanwhile
                    break
            try:
                message = self._ws.recv(timeout=remaining(deadline))
            except TimeoutError:
                raise WaitTimeout(f"no event within {self.timeout}s") from None
            except (OSError, ConnectionClosed) as exc:
                self._reconnect_after(exc, deadline)
                continue
            event = self._feed.read(message)
            if event is not None:
                return event
        self.close()
        raise StopIteration

    def _reconnect_after(self, exc: BaseException, deadline: float | None) -> None:
        """Drop the connection and wait the feed's backoff (cut short by close(), and
        by the deadline: WaitTimeout once it passes)."""
        self._feed.lost(exc)
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        delay = self._feed.backoff()
        left = remaining(deadline)
        if left is not None and left <= delay:
            self._stopped.wait(left)
            if not self._stopped.is_set():
                raise WaitTimeout(f"no event within {self.timeout}s") from None
        self._stopped.wait(delay)


def _subscribe(client: Endpoint, feed: EventFeed, timeout: float | None) -> ClientConnection:
    try:
        ws = connect_to(client, timeout if timeout is not None else client.request_timeout)
    except (OSError, TimeoutError, InvalidHandshake):
        raise  # retried by the iterator
    except Exception as exc:  # an address websockets cannot use: no retry helps
        failure = open_failure(exc, client.url)
        if failure is None:
            raise
        raise failure from exc
    ws.send(feed.subscribe(), text=True)
    return ws
