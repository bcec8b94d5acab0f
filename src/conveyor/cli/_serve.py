"""``conveyor serve --db PATH|URL``: the dashboard, websocket and JSON of a database, and
its fleet-wide metrics (GET /metrics: jobs per queue and status, paused queues, workers,
read from the database), without running any handler (operators watching a fleet)."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from .._runtime import Runtime
from .._urls import without_password
from ..store import store_at
from ._logs import add_log_level_option
from ._usage import DEFAULT_PORT, add_database_option, add_listen_options, require_database


def page_url(rt: Runtime) -> str:
    return rt.server_url.replace("ws://", "http://", 1) + "/"


def add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the dashboard of a database, without running jobs",
        description="Serves the dashboard, the websocket protocol and JSON reads for every"
        " queue in the database, and the fleet's Prometheus gauges at /metrics (the"
        " metrics extra). Handlers run elsewhere (conveyor worker); cancel, rerun"
        " and purge work from here.",
    )
    add_database_option(serve, "conveyor.db")
    add_listen_options(
        serve, port_help=f"port (default {DEFAULT_PORT}; 0: any free one)", default=DEFAULT_PORT
    )
    add_log_level_option(serve, "INFO")
    serve.set_defaults(run=lambda a: anyio.run(_serve, a))


async def _serve(args: argparse.Namespace) -> int:
    await require_database(args.db)
    rt = Runtime(store_at(args.db, create=False), workers=False)
    rt.attach_server(args.host, args.port, token=args.token)
    async with rt:
        where = without_password(args.db)
        print(f"conveyor serve: {where} on {page_url(rt)}; Ctrl-C to stop", flush=True)
        await rt.run_until_signalled()
    return 0
