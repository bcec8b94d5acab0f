"""The ``conveyor`` command. Nothing in the package imports this module.

Argument parsing is the standard library's argparse; tables and progress bars are
rich's (a dependency of conveyor, imported only by the commands that draw).
User mistakes print one line and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._errors import ConveyorError
from ._demo import add_demo_command
from ._jobs import add_jobs_commands
from ._migrate import add_migrate_command
from ._queues import add_queues_commands, add_workers_command
from ._serve import add_serve_command
from ._usage import UsageError
from ._watch import add_watch_command
from ._worker import add_worker_command

__all__ = ("main",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor", description="Run, inspect and watch conveyor jobs."
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(commands)
    add_worker_command(commands)
    add_serve_command(commands)
    add_jobs_commands(commands)
    add_queues_commands(commands)
    add_workers_command(commands)
    add_migrate_command(commands)
    add_watch_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "log_level", None):
        from ._logs import configure_logging

        configure_logging(args.log_level)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except (ConveyorError, UsageError, OSError, BaseExceptionGroup) as exc:
        error = _user_error(exc)
        if error is None:
            raise  # a bug: the traceback is what helps
        print(f"conveyor: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    return code


def _user_error(exc: BaseException) -> Exception | None:
    """The error to print in one line, also when a task group wrapped it alone."""
    if isinstance(exc, (ConveyorError, UsageError, OSError)):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _user_error(exc.exceptions[0])
    return None


if __name__ == "__main__":
    sys.exit(main())
