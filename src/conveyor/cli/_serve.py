"""``conveyor serve --db PATH|URL``: the dashboard, websocket and JSON of a database,
without running any handler (operators watching a fleet of workers)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from .._runtime import Runtime
from ..store import without_password
from ._logs import add_log_level_option
from ._usage import DATABASE_HELP, UsageError, require_database

DEFAULT_PORT = 8765


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (loopback) or ``[::1]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}, not {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=os.environ.get("CONVEYOR_TOKEN"),
        help="require this token from clients (default: $CONVEYOR_TOKEN); needed"
        " for any address beyond loopback",
    )


def page_url(rt: Runtime) -> str:
    return rt.server_url.replace("ws://", "http://", 1) + "/"


def add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the dashboard of a database, without running jobs",
        description="Serves the dashboard, the websocket protocol and JSON reads for every"
        " queue in the database. Handlers run elsewhere (conveyor worker); cancel, rerun"
        " and purge work from here.",
    )
    serve.add_argument("--db", default="conveyor.db", help=DATABASE_HELP)
    serve.add_argument(
        "--serve",
        dest="address",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help=f"HOST:PORT to listen on (default 127.0.0.1:{DEFAULT_PORT}; port 0: any free)",
    )
    add_server_options(serve)
    add_log_level_option(serve, "INFO")
    serve.set_defaults(run=lambda a: anyio.run(_serve, a))


async def _serve(args: argparse.Namespace) -> int:
    await require_database(args.db)
    host, port = parse_address(args.address)
    rt = Runtime(args.db, workers=False)
    rt.attach_server(host, port, token=args.token)
    async with rt:
        where = without_password(args.db)
        print(f"conveyor serve: {where} on {page_url(rt)}; Ctrl-C to stop", flush=True)
        await rt.run_until_signalled()
    return 0
