"""The websocket server. The only package that imports websockets (with conveyor.client)."""

from ._server import Server as Server
from ._server import is_loopback as is_loopback

__all__ = ("Server", "is_loopback")
