"""``conveyor queues ls|pause|resume`` and ``conveyor workers``: the fleet's queues and
workers, from a server URL or a database file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import anyio

from ._jobs import open_source, source_options


def add_queues_commands(commands: Any) -> None:
    queues = commands.add_parser("queues", help="list, pause or resume queues")
    actions = queues.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="each queue: paused or not, and its jobs per status")
    source_options(ls)
    ls.set_defaults(run=lambda a: anyio.run(_ls, a))
    pause = actions.add_parser(
        "pause",
        help="no process starts the queue's jobs until resumed",
        description="Pauses a queue in every process of the store: none starts its jobs"
        " once it has heard, running jobs finish, enqueues are still taken. Lasts until"
        " `conveyor queues resume`, across restarts.",
    )
    source_options(pause)
    pause.add_argument("queue")
    pause.add_argument("--by", help="who paused it, shown by `queues ls`")
    pause.set_defaults(run=lambda a: anyio.run(_change, a, True))
    resume = actions.add_parser("resume", help="start the paused queue's jobs again")
    source_options(resume)
    resume.add_argument("queue")
    resume.set_defaults(run=lambda a: anyio.run(_change, a, False))


def add_workers_command(commands: Any) -> None:
    workers = commands.add_parser(
        "workers",
        help="every runtime running workers: host, pid, queues, heartbeat age, lost or not",
    )
    source_options(workers)
    workers.set_defaults(run=lambda a: anyio.run(_workers, a))


def _show(args: argparse.Namespace, value: Any, table: Callable[[Any], None]) -> int:
    """``value`` as JSON (``--json``) or as ``table`` draws it."""
    from ._render import print_json

    if args.json:
        print_json(value)
    else:
        table(value)
    return 0


async def _workers(args: argparse.Namespace) -> int:
    from ._render import workers_table

    async with open_source(args) as source:
        return _show(args, await source.workers(), workers_table)


async def _ls(args: argparse.Namespace) -> int:
    from ._render import queues_table

    async with open_source(args) as source:
        return _show(args, await source.queue_states(), queues_table)


async def _change(args: argparse.Namespace, paused: bool) -> int:
    from ._render import queues_table

    async with open_source(args) as source:
        if paused:
            state = await source.pause(args.queue, by=args.by or "conveyor queues")
        else:
            state = await source.resume(args.queue)
        served = any(state.name in w.queues for w in await source.workers())
    if not served and not any(state.counts.values()):
        # Any name may be paused ahead of its workers; but it may be a typo.
        print(f"note: queue {state.name!r} has no jobs and no worker runs it", file=sys.stderr)
    return _show(args, state, lambda one: queues_table([one]))
