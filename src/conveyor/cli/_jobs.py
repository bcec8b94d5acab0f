"""``conveyor jobs ls|show|cancel|rerun|purge`` against a server URL or a database file,
and the source of jobs and queues that these and ``conveyor queues`` read and change."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio

from .._errors import InvalidTransition
from .._models import HistoryEntry, Job, QueueState, WorkerState
from .._runtime import Runtime
from .._states import JobStatus
from ..client import Client
from ..store import store_at
from ._usage import (
    DATABASE_HELP,
    UsageError,
    add_token_option,
    duration,
    limit,
    meta_filter,
    meta_pair,
    require_database,
)


class JobSource(Protocol):
    """What the commands need, from a server (Client) or from the file (Runtime)."""

    async def list_jobs(
        self,
        queue: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        tags: list[str],
        meta: dict[str, str],
    ) -> list[Job]: ...
    async def job(self, job_id: str) -> Job: ...
    async def history(self, job_id: str) -> list[HistoryEntry]: ...
    async def cancel(self, job_id: str) -> Job: ...
    async def rerun(self, job_id: str) -> Job: ...
    async def purge(
        self, older_than: float, statuses: list[str] | None, queue: str | None
    ) -> int: ...
    async def queue_states(self) -> list[QueueState]: ...
    async def workers(self) -> list[WorkerState]: ...
    async def cancel_matching(self, **match: Any) -> int: ...
    async def rerun_matching(self, **match: Any) -> int: ...
    async def pause(self, queue: str, *, by: str | None = ...) -> QueueState: ...
    async def resume(self, queue: str) -> QueueState: ...


class _ServerSource:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def list_jobs(
        self,
        queue: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        tags: list[str],
        meta: dict[str, str],
    ) -> list[Job]:
        return await self.client.list_jobs(
            queue=queue, status=status, limit=limit, cursor=cursor, tags=tags, meta=meta
        )

    async def job(self, job_id: str) -> Job:
        return await self.client.job(job_id)

    async def history(self, job_id: str) -> list[HistoryEntry]:
        return await self.client.history(job_id)

    async def cancel(self, job_id: str) -> Job:
        return await self.client.cancel(job_id)

    async def rerun(self, job_id: str) -> Job:
        return await self.client.rerun(job_id, by="conveyor jobs")

    async def purge(self, older_than: float, statuses: list[str] | None, queue: str | None) -> int:
        return await self.client.purge(older_than=older_than, statuses=statuses, queue=queue)

    async def queue_states(self) -> list[QueueState]:
        return await self.client.queue_states()

    async def workers(self) -> list[WorkerState]:
        return await self.client.workers()

    async def cancel_matching(self, **match: Any) -> int:
        return await self.client.cancel_matching(**match)

    async def rerun_matching(self, **match: Any) -> int:
        return await self.client.rerun_matching(**match)

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        return await self.client.pause(queue, by=by)

    async def resume(self, queue: str) -> QueueState:
        return await self.client.resume(queue)


class _FileSource:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def list_jobs(
        self,
        queue: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        tags: list[str],
        meta: dict[str, str],
    ) -> list[Job]:
        return await self.rt.list_jobs(
            queue=queue, status=status, limit=limit, cursor=cursor, tags=tags, meta=meta
        )

    async def job(self, job_id: str) -> Job:
        return await self.rt.job(job_id)

    async def history(self, job_id: str) -> list[HistoryEntry]:
        return await self.rt.history(job_id)

    async def cancel(self, job_id: str) -> Job:
        job = await self.rt.job(job_id)
        return await self.rt.request_job_cancel(job.queue, job_id)

    async def rerun(self, job_id: str) -> Job:
        return await self.rt.rerun(job_id, by="conveyor jobs")

    async def purge(self, older_than: float, statuses: list[str] | None, queue: str | None) -> int:
        if statuses is None:
            return await self.rt.purge(older_than=older_than, queue=queue)
        return await self.rt.purge(older_than=older_than, statuses=statuses, queue=queue)

    async def queue_states(self) -> list[QueueState]:
        return await self.rt.queue_states()

    async def workers(self) -> list[WorkerState]:
        return await self.rt.workers()

    async def cancel_matching(self, **match: Any) -> int:
        return await self.rt.cancel_matching(**match)

    async def rerun_matching(self, **match: Any) -> int:
        return await self.rt.rerun_matching(**match)

    async def pause(self, queue: str, *, by: str | None = None) -> QueueState:
        return await self.rt.pause(queue, by=by)

    async def resume(self, queue: str) -> QueueState:
        return await self.rt.resume(queue)


@asynccontextmanager
async def open_source(args: argparse.Namespace) -> AsyncIterator[JobSource]:
    url, db = args.url, args.db
    if url is None and db is None:  # neither flag: the environment decides
        url = os.environ.get("CONVEYOR_URL") or None
        db = None if url else os.environ.get("CONVEYOR_DB") or None
    if db is not None:
        await require_database(db)
        # Observes every queue of the database; workers elsewhere see its changes as theirs.
        async with Runtime(store_at(db, create=False), workers=False) as rt:
            yield _FileSource(rt)
    elif url is not None:
        async with Client(url, token=args.token) as client:
            yield _ServerSource(client)
    else:
        raise UsageError("say where the jobs are: --url or --db (or $CONVEYOR_URL, $CONVEYOR_DB)")


def source_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="a server, e.g. ws://127.0.0.1:8765 (default: $CONVEYOR_URL)")
    where.add_argument("--db", help=DATABASE_HELP)
    add_token_option(parser, "the server's token, if it requires one (default: $CONVEYOR_TOKEN)")
    parser.add_argument("--json", action="store_true", help="JSON output, for scripts")


def add_jobs_commands(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="list, show, cancel, rerun or purge jobs")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")

    ls = actions.add_parser("ls", help="list jobs, newest first")
    source_options(ls)
    ls.add_argument("--queue")
    ls.add_argument("--status", choices=[s.value for s in JobStatus])
    ls.add_argument("--limit", type=limit, default=50, help="how many (1 to 1000, default 50)")
    ls.add_argument("--cursor", help="the last id of the previous page")
    ls.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME",
        help="only jobs with this tag (repeatable: jobs with every one)",
    )
    ls.add_argument(
        "--meta",
        action="append",
        type=meta_pair,
        default=[],
        metavar="KEY=VALUE",
        help="only jobs whose meta KEY is exactly VALUE (repeatable: every pair)",
    )
    ls.set_defaults(run=lambda a: anyio.run(_ls, a))

    for name, help_text in (
        ("show", "a job, its error and traceback, and its history"),
        ("cancel", "cancel a job"),
        ("rerun", "put a finished job back to queued"),
    ):
        action = actions.add_parser(name, help=help_text)
        source_options(action)
        action.add_argument("job_id")
        action.set_defaults(run=lambda a, name=name: anyio.run(_one, a, name))

    purge = actions.add_parser(
        "purge",
        help="delete finished jobs and their history",
        description="Deletes finished jobs (completed, failed and cancelled, unless --status"
        " narrows it) and their history, for good. Say how old with --older-than (e.g."
        " 7d), or --all for every finished job whatever its age.",
    )
    source_options(purge)
    age = purge.add_mutually_exclusive_group()
    age.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="finished longer ago than this: 90s, 15m, 12h, 7d",
    )
    age.add_argument("--all", action="store_true", help="every finished job, whatever its age")
    purge.add_argument(
        "--status",
        action="append",
        choices=["completed", "failed", "cancelled"],
        help="only jobs that ended so (repeatable; default: all three)",
    )
    purge.add_argument("--queue")
    purge.set_defaults(run=lambda a: anyio.run(_purge, a))

    for name, help_text, statuses, default in (
        (
            "cancel-matching",
            "cancel every job matching the filters",
            ["scheduled", "queued", "running"],
            "all three",
        ),
        (
            "rerun-matching",
            "rerun, once, every ended job matching the filters",
            ["completed", "failed", "cancelled"],
            "failed",
        ),
    ):
        bulk = actions.add_parser(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}, in transactions of 500 jobs,"
            " each job with its history row. Give at least one filter.",
        )
        source_options(bulk)
        bulk.add_argument("--queue")
        bulk.add_argument(
            "--status",
            action="append",
            choices=statuses,
            help=f"only jobs in this status (repeatable; default: {default})",
        )
        bulk.add_argument("--created-by")
        bulk.add_argument(
            "--older-than", type=duration, metavar="DURATION", help="created longer ago than this"
        )
        if name == "rerun-matching":
            bulk.add_argument(
                "--by", default="conveyor jobs", help="who reruns them, in their history"
            )
        bulk.set_defaults(run=lambda a, name=name: anyio.run(_matching, a, name))


async def _ls(args: argparse.Namespace) -> int:
    from ._render import jobs_table, print_json

    async with open_source(args) as source:
        jobs = await source.list_jobs(
            args.queue, args.status, args.limit, args.cursor, args.tag, meta_filter(args.meta)
        )
    if args.json:
        print_json(jobs)
    else:
        jobs_table(jobs)
    return 0


async def _one(args: argparse.Namespace, action: str) -> int:
    from ._render import job_details, jobs_table, print_json

    async with open_source(args) as source:
        if action == "show":
            job = await source.job(args.job_id)
            history = await source.history(args.job_id)
            if args.json:
                print_json({"job": job, "history": history})
            else:
                job_details(job, history)
            return 0
        if action == "cancel":
            current = await source.job(args.job_id)
            if current.status.is_terminal:
                raise InvalidTransition(
                    f"job {current.id} is already {current.status.value}: nothing to cancel"
                )
            job = await source.cancel(args.job_id)
        else:
            job = await source.rerun(args.job_id)
    if args.json:
        print_json(job)
    else:
        jobs_table([job])
    return 0


async def _purge(args: argparse.Namespace) -> int:
    from ._render import console, print_json

    if args.older_than is None and not args.all:
        raise UsageError(
            "purge deletes finished jobs for good: say --older-than DURATION (e.g. 7d) or --all"
        )
    async with open_source(args) as source:
        deleted = await source.purge(args.older_than or 0.0, args.status, args.queue)
    if args.json:
        print_json({"deleted": deleted})
    else:
        console.print(f"deleted {deleted} jobs")
    return 0


async def _matching(args: argparse.Namespace, name: str) -> int:
    from ._render import console, print_json

    match: dict[str, Any] = {
        "queue": args.queue,
        "created_by": args.created_by,
        "older_than": args.older_than,
    }
    if not any(v is not None for v in match.values()) and args.status is None:
        raise UsageError(f"{name} acts on many jobs at once: give a filter (e.g. --queue)")
    if args.status is not None:
        match["statuses"] = args.status
    async with open_source(args) as source:
        if name == "cancel-matching":
            count, done = await source.cancel_matching(**match), "cancelled"
        else:
            count = await source.rerun_matching(**match, by=args.by)
            done = "rerun"
    if args.json:
        print_json({done: count})
    else:
        console.print(f"{done} {count} jobs")
    return 0
