"""User mistakes, the checks that catch them before anything starts, and the argument
types and options the commands share (durations, ports, where the jobs are, tokens), each
reading its ``CONVEYOR_*`` environment variable as its default."""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any, Final

import anyio

from .._urls import is_postgres_url


class UsageError(Exception):
    """A mistake in how the command was called: printed as one line, exit code 2."""


DATABASE_HELP = (
    "a database: a SQLite file (e.g. conveyor.db) or a postgresql:// URL (default: $CONVEYOR_DB)"
)
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765

_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", re.IGNORECASE)


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w`` (argparse type)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m, 12h or 7d, not {text!r}"
        )
    value = float(match[1]) * _UNITS[match[2].lower()]
    if not math.isfinite(value) or value > 100 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 100 years")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535 (argparse type)."""
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, not {text!r}")
    return int(text)


def positive_number(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, not {text!r}")
    return value


def limit(text: str) -> int:
    """How many jobs to list: 1 to 1000 (argparse type)."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 1000, not {text!r}")
    return int(text)


def meta_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of a meta filter, split at the first ``=`` (argparse type; keys
    hold no ``=``, values may); what they hold the runtime checks, as for list_jobs."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. tenant=acme, not {text!r}")
    return key, value


def meta_filter(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The ``--meta`` pairs as one filter; UsageError for a key given twice (a job has
    one value per key, so both could never match)."""
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise UsageError(f"--meta {key}= is given twice: a job has one value per key")
        found[key] = value
    return found


def add_token_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--token", default=os.environ.get("CONVEYOR_TOKEN") or None, help=help_text)


def add_listen_options(parser: argparse.ArgumentParser, *, port_help: str, default: Any) -> None:
    """``--host`` and ``--port``, the same on every command that serves."""
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; beyond loopback needs --token)",
    )
    parser.add_argument("--port", type=port, default=default, help=port_help)
    add_token_option(
        parser,
        "require this token from clients (default: $CONVEYOR_TOKEN); needed for any"
        " address beyond loopback",
    )


def add_database_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--db", default=os.environ.get("CONVEYOR_DB") or default, help=DATABASE_HELP
    )


async def require_database(db: str) -> None:
    """Refuse a file that does not exist rather than create an empty database there. A
    PostgreSQL URL is tried when opened (``store_at(..., create=False)``): a server that
    does not answer, or a schema with no conveyor tables, is a StoreError."""
    if not is_postgres_url(db) and not await anyio.Path(db).is_file():
        raise UsageError(f"no database at {db}")
