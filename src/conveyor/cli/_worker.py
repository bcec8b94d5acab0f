"""``conveyor worker MODULE:ATTR``: run the queues of an application's Runtime."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

import anyio

from .._runtime import Runtime
from ._logs import add_log_level_option
from ._serve import page_url
from ._usage import UsageError, add_listen_options


def add_worker_command(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run the queues of your Runtime until SIGINT/SIGTERM",
        description="Runs the Runtime at MODULE:ATTR (or the one the function there"
        " returns). SIGINT or SIGTERM stops it gracefully: running jobs get the"
        " runtime's grace period, then go back to the queue; a second signal stops"
        " at once.",
    )
    worker.add_argument("target", help="MODULE:ATTR, e.g. myapp.jobs:runtime")
    add_listen_options(
        worker,
        port_help="also serve the dashboard and websocket on this port (0: any free one)",
        default=None,
    )
    add_log_level_option(worker, "INFO")
    worker.set_defaults(run=_run)


def load_runtime(target: str) -> Runtime:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"expected MODULE:ATTR, e.g. myapp.jobs:runtime, not {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the app's own modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise UsageError(f"{module_name} has no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, Runtime):
        obj = obj()
    if not isinstance(obj, Runtime):
        raise UsageError(f"{target} is not a Runtime (nor a function returning one)")
    return obj


def _run(args: argparse.Namespace) -> int:
    rt = load_runtime(args.target)
    if args.port is not None:
        rt.attach_server(args.host, args.port, token=args.token)

    async def serve() -> None:
        async with rt:
            names = ", ".join(rt.queues) or "no queues"
            print(f"conveyor worker: running {names}; Ctrl-C or SIGTERM to stop", flush=True)
            if args.port is not None:
                print(f"conveyor worker: dashboard on {page_url(rt)}", flush=True)
            await rt.run_until_signalled()
            print("conveyor worker: stopping (a second signal stops at once)", flush=True)
        print("conveyor worker: stopped", flush=True)

    anyio.run(serve)
    return 0
