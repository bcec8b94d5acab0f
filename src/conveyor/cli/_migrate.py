"""``conveyor migrate --from conveyor.db --to postgresql://...``: a SQLite queue database
copied whole into PostgreSQL (see store/postgres/_import.py), refused while workers run on
the SQLite file (their commits after the copy would be lost to it)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from .._errors import ConveyorError
from .._urls import is_postgres_url, without_password
from ..engine import is_lost
from ._usage import UsageError, require_database


def add_migrate_command(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="copy a SQLite queue database into PostgreSQL, history and all",
        description="Copies every job, its history (with its seqs: event streams resume"
        " where the SQLite one ended), periodic schedules and paused queues from a SQLite"
        " file into an empty PostgreSQL schema, in one transaction. Stop the workers on the"
        " file first: it refuses while any runs.",
    )
    migrate.add_argument("--from", dest="source", required=True, help="the SQLite file")
    migrate.add_argument(
        "--to", dest="target", required=True, help="a postgresql:// URL (?schema=NAME)"
    )
    migrate.add_argument("--json", action="store_true", help="JSON output, for scripts")
    migrate.set_defaults(run=lambda a: anyio.run(_migrate, a))


async def _migrate(args: argparse.Namespace) -> int:
    from ..store import SQLiteStore
    from ..store.postgres import PostgresStore
    from ..store.postgres._import import copy_from_sqlite
    from ._render import console, print_json

    if is_postgres_url(args.source):
        raise UsageError("--from is the SQLite file to copy")
    if not is_postgres_url(args.target):
        raise UsageError("--to must be a postgresql:// URL")
    await require_database(args.source)
    source = SQLiteStore(args.source)
    await source.open("conveyor migrate")
    try:
        running = [w.id for w in await source.workers.all() if not is_lost(w, time.time())]
        if running:
            raise ConveyorError(
                f"workers run on {args.source} ({', '.join(running)}): stop them first, or"
                " their commits after the copy would be lost to it"
            )
        target = PostgresStore(args.target)
        await target.open("conveyor migrate")
        try:
            copied = await copy_from_sqlite(source, target)
        finally:
            await target.close()
        last_seq = await source.reads.last_seq()
    finally:
        await source.close()
    where = without_password(args.target)
    if args.json:
        print_json({"copied": copied, "last_seq": last_seq, "to": where})
    else:
        console.print(
            f"copied {copied['jobs']} jobs and {copied['job_history']} history rows"
            f" (events resume after seq {last_seq}), {copied['periodic']} periodic"
            f" schedules and {copied['paused_queues']} paused queues into {where}"
        )
    return 0
