"""conveyor._primitives makes anyio's Event and CancelScope directly: they must behave as
anyio's own, inside a loop and before one runs."""

from __future__ import annotations

import anyio
import pytest

from conveyor._primitives import new_event, new_scope

pytestmark = pytest.mark.anyio


async def test_they_are_anyio_objects_that_work() -> None:
    event = new_event()
    assert type(event) is type(anyio.Event())
    async with anyio.create_task_group() as tg:
        tg.start_soon(event.wait)
        event.set()
    with new_scope(deadline=anyio.current_time() + 0.01) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    slept = False
    with new_scope() as outer:
        outer.cancel()
        with new_scope(shield=True):
            await anyio.sleep(0.001)  # a shielded scope is not cancelled from outside
            slept = True
        await anyio.sleep(0.001)
    assert slept
    assert outer.cancelled_caught


def test_made_before_a_loop_runs_they_work_in_one() -> None:
    event = new_event()  # as a Batcher made before the runtime starts makes its own

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(event.wait)
            event.set()

    anyio.run(main)
    assert event.is_set()
