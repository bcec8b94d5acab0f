"""``conveyor jobs ls|show|cancel|rerun|purge`` against a server URL."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from .._states import JobStatus
from ..client import Client


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the server, e.g. ws://127.0.0.1:8765")
    parser.add_argument("--token", help="the server's token, if it requires one")
    parser.add_argument("--json", action="store_true", help="JSON output, for scripts")


def add_jobs_commands(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="list, show, cancel, rerun or purge jobs")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = actions.add_parser("ls", help="list jobs, newest first")
    _connection_options(ls)
    ls.add_argument("--queue")
    ls.add_argument("--status", choices=[s.value for s in JobStatus])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor", help="the last id of the previous page")
    ls.set_defaults(run=lambda a: anyio.run(_ls, a))

    for name, help_text in (
        ("show", "a job, its error and traceback, and its history"),
        ("cancel", "cancel a job"),
        ("rerun", "put a finished job back to queued"),
    ):
        action = actions.add_parser(name, help=help_text)
        _connection_options(action)
        action.add_argument("job_id")
        action.set_defaults(run=lambda a, name=name: anyio.run(_one, a, name))

    purge = actions.add_parser("purge", help="delete finished jobs")
    _connection_options(purge)
    purge.add_argument("--older-than", type=float, default=0, help="seconds since it finished")
    purge.add_argument("--status", action="append", choices=["completed", "failed", "cancelled"])
    purge.add_argument("--queue")
    purge.set_defaults(run=lambda a: anyio.run(_purge, a))


async def _ls(args: argparse.Namespace) -> int:
    from ._render import jobs_table, print_json

    async with Client(args.url, token=args.token) as client:
        jobs = await client.list_jobs(
            queue=args.queue, status=args.status, limit=args.limit, cursor=args.cursor
        )
    if args.json:
        print_json(jobs)
    else:
        jobs_table(jobs)
    return 0


async def _one(args: argparse.Namespace, action: str) -> int:
    from ._render import job_details, jobs_table, print_json

    async with Client(args.url, token=args.token) as client:
        if action == "show":
            job = await client.job_status(args.job_id)
            history = await client.history(args.job_id)
            if args.json:
                print_json({"job": job, "history": history})
            else:
                job_details(job, history)
            return 0
        job = await (client.cancel if action == "cancel" else client.rerun)(args.job_id)
    if args.json:
        print_json(job)
    else:
        jobs_table([job])
    return 0


async def _purge(args: argparse.Namespace) -> int:
    from ._render import console, print_json

    async with Client(args.url, token=args.token) as client:
        deleted = await client.purge(
            older_than=args.older_than, statuses=args.status, queue=args.queue
        )
    if args.json:
        print_json({"deleted": deleted})
    else:
        console.print(f"deleted {deleted} jobs")
    return 0
