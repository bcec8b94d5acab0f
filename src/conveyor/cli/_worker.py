"""``conveyor worker MODULE:ATTR``: run the queues of an application's Runtime.

What MODULE:ATTR may be, each giving a Runtime or a list of the application's queues
(which then run on ``--db``):

- a Runtime, or a list of Queue instances;
- a function, plain or ``async def``, that returns one;
- an async context manager that yields one (an ``@asynccontextmanager`` function, or
  the object itself), entered before the runtime starts and left after it stopped: the
  place to open what the queues share (an HTTP client, a connection pool) and close it.
  A Runtime it yields already running (entered inside it) is used as it is.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import anyio

from .._queue import Queue
from .._runtime import Runtime
from ._logs import add_log_level_option
from ._serve import page_url
from ._usage import UsageError, add_database_option, add_listen_options

EXPECTED = (
    "a Runtime or a list of queues, a function or async function returning one,"
    " or an async context manager yielding one"
)


def add_worker_command(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run the queues of your Runtime until SIGINT/SIGTERM",
        description="Runs the Runtime at MODULE:ATTR: a Runtime or a list of queues (run"
        " on --db), a function or async function returning one, or an async context"
        " manager yielding one (entered before the runtime starts, left after it stopped)."
        " SIGINT or SIGTERM stops it gracefully: running jobs get the runtime's grace"
        " period, then go back to the queue; a second signal stops at once.",
    )
    worker.add_argument("target", help="MODULE:ATTR, e.g. myapp.jobs:runtime")
    add_database_option(worker, "conveyor.db")
    add_listen_options(
        worker,
        port_help="also serve the dashboard and websocket on this port (0: any free one)",
        default=None,
    )
    add_log_level_option(worker, "INFO")
    worker.set_defaults(run=_run)


def import_target(target: str) -> Any:
    """The object MODULE:ATTR names (UsageError if there is none)."""
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
    return obj


def _is_async_context_manager(obj: Any) -> bool:
    return hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__")


def _as_runtime(target: str, obj: Any, db: str, how: str) -> Runtime:
    if isinstance(obj, Runtime):
        return obj
    if isinstance(obj, Sequence) and not isinstance(obj, str) and obj:
        if all(isinstance(q, Queue) for q in obj):
            return Runtime(db, queues=obj)
    raise UsageError(f"{target} {how} {type(obj).__name__}, not {EXPECTED}")


async def open_runtime(target: str, db: str, stack: AsyncExitStack) -> Runtime:
    """The Runtime MODULE:ATTR gives (see the module's docstring), its context manager,
    if any, entered on ``stack``. UsageError, naming the target and what it gave, for
    anything else."""
    obj = import_target(target)
    how = "is"
    if callable(obj) and not isinstance(obj, Runtime) and not _is_async_context_manager(obj):
        obj = obj()
        how = "returned"
        if inspect.isawaitable(obj):
            obj = await obj
    if _is_async_context_manager(obj) and not isinstance(obj, Runtime):
        manager: AbstractAsyncContextManager[Any] = obj
        obj = await stack.enter_async_context(manager)
        how = "yielded"
    return _as_runtime(target, obj, db, how)


def _run(args: argparse.Namespace) -> int:
    async def serve() -> None:
        async with AsyncExitStack() as stack:
            rt = await open_runtime(args.target, args.db, stack)
            running = rt._stack is not None  # entered by the target's own context manager
            if args.port is not None:
                if running:
                    raise UsageError(
                        f"{args.target} yielded a Runtime already running: --port needs"
                        " one to start (or give it serve=(host, port) yourself)"
                    )
                rt.attach_server(args.host, args.port, token=args.token)
            if not running:
                await stack.enter_async_context(rt)
            names = ", ".join(rt.queues) or "no queues"
            print(f"conveyor worker: running {names}; Ctrl-C or SIGTERM to stop", flush=True)
            if args.port is not None:
                print(f"conveyor worker: dashboard on {page_url(rt)}", flush=True)
            await rt.run_until_signalled()
            print("conveyor worker: stopping (a second signal stops at once)", flush=True)
        print("conveyor worker: stopped", flush=True)

    anyio.run(serve)
    return 0
