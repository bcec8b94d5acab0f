"""A TCP forwarder that delays every chunk by a fixed time each way, keeping order.

Usage: python forwarder.py LISTEN_HOST LISTEN_PORT TARGET_PORT DELAY_MS

Listens on LISTEN_HOST:LISTEN_PORT (0: any free port, printed as ``listening PORT``) and
forwards each connection to 127.0.0.1:TARGET_PORT. Used by the network-fault tests, with
netns.py, since this kernel has no netem to delay packets with.

SIGUSR1 makes it give up on every connection it holds, as a server does that drops its
clients: the client side is reset (a RST, which a partition swallows, so the client may
never hear of it) and the server side closed.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import sys
import time


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                writer.close()
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
        queue.put_nowait((time.monotonic() + delay, b""))
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
        writer.close()


HELD: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()


def give_up() -> None:
    for client, server in list(HELD):
        sock = client.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.transport.abort()  # a RST, and this side forgets the connection
        server.close()
    HELD.clear()
    print("gave up on every connection", flush=True)


async def main() -> None:
    host, port, target, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, give_up)

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # A client cut off by a partition is noticed (and its backend freed) in seconds.
        sock = client_w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_w.close()
            return
        pair = (client_w, server_w)
        HELD.add(pair)
        try:
            await asyncio.gather(
                pipe(client_r, server_w, delay / 1000), pipe(server_r, client_w, delay / 1000)
            )
        finally:
            HELD.discard(pair)

    server = await asyncio.start_server(serve, host, port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
