"""Writes docs/cli.md, the reference of the ``conveyor`` command, from its argparse parser.

    python docs/gen_cli.py            # (re)write docs/cli.md; `make docs` runs it
    python docs/gen_cli.py --check    # exit 1 if docs/cli.md is not what the parser says

The page is generated, never edited by hand, so it cannot drift from the command:
tests/e2e/test_docs.py runs ``--check``. Defaults that come from ``CONVEYOR_*``
environment variables are read when the parser is built, so this script builds it with
those variables unset (and a fixed terminal width), and the page is the same everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAGE = Path(__file__).with_name("cli.md")
WIDTH = "100"  # argparse wraps usage lines to $COLUMNS

HEADER = """\
# The `conveyor` command

Every install has it, and it runs as `python -m conveyor` too. This page is generated from
the command's own parser by `docs/gen_cli.py` (`make docs` runs it; a test fails when the
page and the parser disagree), so it lists exactly what the installed command takes.

Common to all commands: `--db` defaults to `$CONVEYOR_DB`, `--url` to `$CONVEYOR_URL` (a
`ws://` address, or the `http://` one the commands print), `--token` to `$CONVEYOR_TOKEN`.
Durations read `90s`, `15m`, `12h`, `7d`, `2w` (or plain seconds). Mistakes print one line
and exit non-zero: 2 for usage, 1 for a refused request (such as cancelling a job that
already ended).

At a glance:

```sh
conveyor demo [--db conveyor.db] [--port 8765]     # sample queues, a varied stream, the dashboard
conveyor worker myapp.jobs:runtime --port 8765     # run your Runtime (or a factory); SIGTERM drains
conveyor serve --db conveyor.db                    # dashboard + websocket for a file, no handlers
conveyor jobs ls --db conveyor.db --status failed  # or --url ws://host:8765; --json for scripts
conveyor jobs show|cancel|rerun JOB_ID --db conveyor.db
conveyor jobs purge --db conveyor.db --older-than 7d --status completed   # or --all
conveyor workers --db conveyor.db           # every runtime running workers, heartbeat age, lost
conveyor migrate --from conveyor.db --to postgresql://host/db   # up to a fleet, history and all
conveyor queues ls --db conveyor.db         # paused or not, jobs per status
conveyor queues pause|resume QUEUE --db conveyor.db
conveyor jobs cancel-matching --db conveyor.db --queue sync --created-by import
conveyor jobs rerun-matching --db conveyor.db --queue sync   # the failed ones, once
conveyor watch ws://127.0.0.1:8765 --queue exports # live progress bars in the terminal
conveyor --version
```

`demo`, `serve` and `worker` take the same `--host`, `--port` and `--token`. `purge`
deletes for good, so it needs `--older-than` or `--all`. `serve` and `jobs --db` open
the file as an observer: they see every queue, cancel, rerun and purge, and workers in
other processes act on it within `poll_interval`; they do not enqueue (they know no payload
types). `serve` shows the progress of jobs that workers elsewhere run, as those workers
write it (every `progress_interval`, 0.25 s by default).
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def _row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    if action.option_strings:
        metavar = (
            "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
        )
        name = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
    else:
        name = f"`{formatter._format_args(action, action.dest)}`"
    text = formatter._expand_help(action) if action.help else ""
    default = action.default
    shown = (
        "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
    )
    cell = text.replace("|", "\\|").replace("\n", " ")
    return f"| {name} | {shown} | {cell} |"


def _section(path: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `{path}`", ""]
    about = parser.description or summary
    if about:
        lines += [about, ""]
    first, *rest = parser.format_usage().strip().removeprefix("usage: ").split("\n")
    usage = "\n".join([first, *(line.removeprefix(" " * len("usage: ")) for line in rest)])
    lines += ["```text", usage, "```", ""]
    rows = [
        _row(parser, action)
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]
    if rows:
        lines += ["| argument | default | what it is |", "|---|---|---|", *rows, ""]
    subs = _subcommands(parser)
    if subs:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| `{path} {name}` | {text} |" for name, text, _ in subs]
        lines.append("")
    for name, text, sub in subs:
        lines += _section(f"{path} {name}", text, sub)
    return lines


@contextmanager
def _plain_environment() -> Iterator[None]:
    """No ``CONVEYOR_*`` variables and a fixed width while the page is made; restored after."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("CONVEYOR_")]:
        del os.environ[name]
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def render() -> str:
    """The page, from the parser built with no ``CONVEYOR_*`` variables set."""
    from conveyor.cli import build_parser

    with _plain_environment():
        lines = [HEADER, *_section("conveyor", "", build_parser())]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print("usage: python docs/gen_cli.py [--check]", file=sys.stderr)
        return 2
    page = render()
    if check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is stale: run `python docs/gen_cli.py` (or make docs)", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
