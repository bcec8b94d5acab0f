"""conveyor's pytest plugin: fixtures for tests of code that uses conveyor.

pytest loads it by itself once conveyor is installed (the ``pytest11`` entry point);
nothing in conveyor imports it, so conveyor never imports pytest. Fixtures:

- ``conveyor_queues``: the queues to run. Define it (in a conftest.py or a test module)
  to return your Queue instances; the plugin's own says so and fails.
- ``conveyor_db``: the SQLite file of the test's runtime, in ``tmp_path``, removed
  after the test.
- ``conveyor_clock``: the runtime's clock, a ManualClock (``advance()`` moves time;
  ``drain(run_scheduled=True)`` moves it for you). Override it to return
  ``conveyor.SystemClock()`` for real time.
- ``conveyor_runtime``: a running conveyor.testing.TestRuntime on those three, stopped
  after the test. Options from the ``conveyor`` marker:
  ``@pytest.mark.conveyor(inline=True, lease_ttl=5)`` (``inline`` and Runtime's
  keyword options).

Async fixtures run through anyio's pytest plugin: mark the tests ``@pytest.mark.anyio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ._clock import Clock, ManualClock
from ._queue import Queue
from .testing import TestRuntime, runtime

MARKER = "conveyor"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(inline=False, **runtime_options): options of the conveyor_runtime fixture",
    )


@pytest.fixture
def conveyor_queues() -> Sequence[Queue[Any]]:
    """The queues conveyor_runtime runs: yours to define."""
    pytest.fail(
        "conveyor_runtime needs your queues: define a fixture named conveyor_queues"
        " that returns them, e.g. `return [ExportQueue()]`",
        pytrace=False,
    )


@pytest.fixture
def conveyor_db(tmp_path: Path) -> Iterator[Path]:
    """The test runtime's SQLite file (with its -wal and -shm), removed afterwards."""
    path = tmp_path / "conveyor.db"
    yield path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def conveyor_clock() -> Clock:
    """The test runtime's clock: a ManualClock at the wall clock's time now."""
    return ManualClock()


@pytest.fixture
async def conveyor_runtime(
    request: pytest.FixtureRequest,
    anyio_backend: Any,  # the runtime is asyncio's: this makes anyio run the fixture
    conveyor_queues: Sequence[Queue[Any]],
    conveyor_db: Path,
    conveyor_clock: Clock,
) -> AsyncIterator[TestRuntime]:
    """A running TestRuntime of conveyor_queues on conveyor_db and conveyor_clock."""
    marker = request.node.get_closest_marker(MARKER)
    options: dict[str, Any] = {}
    if marker is not None:
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes keyword options only (inline=True, ...),"
                f" not {marker.args!r}",
                pytrace=False,
            )
        options = dict(marker.kwargs)
    options.setdefault("clock", conveyor_clock)
    async with runtime(conveyor_queues, db=conveyor_db, **options) as rt:
        yield rt
