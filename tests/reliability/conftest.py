"""The fault suite: small enough for ``make test``, full size with ``make soak``
(CONVEYOR_SOAK=1). Each test prints its figure as one ``FIGURE name: key=value, ...``
line (``pytest -s`` shows them; CONVEYOR_FIGURES=path also appends them there as JSON
lines); docs/reliability.md tables them with the command that produces each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

SOAK = bool(os.environ.get("CONVEYOR_SOAK"))
T = TypeVar("T")
HERE = Path(__file__).parent


def scaled(small: T, full: T) -> T:
    """The make-test size, or under ``make soak`` the full one."""
    return full if SOAK else small


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    def record(**values: Any) -> None:
        name = request.node.name
        print(f"FIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        path = os.environ.get("CONVEYOR_FIGURES")
        if path:
            with open(path, "a") as out:
                out.write(json.dumps({"test": name, "soak": SOAK, **values}) + "\n")

    return record


class Child:
    """A child process of the suite's own (an app script in this folder), its output
    going to a file (never a pipe nobody reads, which would block it)."""

    def __init__(
        self, script: str, *args: str, log: Path, wrap: Callable[[list[str]], list[str]] | None
    ) -> None:
        self.log = log
        self._out = log.open("ab")
        argv = [sys.executable, str(HERE / script), *args]
        self.proc = subprocess.Popen(
            argv if wrap is None else wrap(argv),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL and reap (an unreaped child looks alive to a rescuer's pid check)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._out.close()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(
        script: str, *args: str, wrap: Callable[[list[str]], list[str]] | None = None
    ) -> Child:
        """``script ARGS`` in a child; ``wrap`` turns the command into another (one that
        runs it in a network namespace, say)."""
        child = Child(script, *args, log=tmp_path / f"child{len(started)}.log", wrap=wrap)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()
