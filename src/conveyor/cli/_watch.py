"""``conveyor watch URL``: live progress of a server's jobs in the terminal."""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from ..client import Client
from ._live import show
from ._logs import add_log_level_option
from ._usage import UsageError, add_token_option


def add_watch_command(commands: Any) -> None:
    watch = commands.add_parser("watch", help="live progress bars of a server's jobs")
    watch.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("CONVEYOR_URL") or None,
        help="the server, e.g. ws://127.0.0.1:8765 (default: $CONVEYOR_URL)",
    )
    watch.add_argument("--queue")
    add_token_option(watch, "the server's token, if it requires one (default: $CONVEYOR_TOKEN)")
    add_log_level_option(watch, "WARNING")
    watch.set_defaults(run=lambda a: anyio.run(_watch, a))


async def _watch(args: argparse.Namespace) -> int:
    if args.url is None:
        raise UsageError("say which server: conveyor watch ws://HOST:PORT (or $CONVEYOR_URL)")
    async with Client(args.url, token=args.token) as client:
        await client.list_jobs(limit=1)  # fail fast, with one line, if unreachable
        await show(client.events(queue=args.queue))
    return 0
