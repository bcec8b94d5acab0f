"""Whether a lease owner's process is gone, with real child processes: one killed and not
yet reaped (a zombie, which still answers kill(pid, 0)) counts as gone, as does one
reaped; a live one and this very process do not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conveyor.engine._owners import new_owner_id, owner_is_dead

pytestmark = pytest.mark.timeout(30)


def owner(pid: int) -> str:
    return f"{socket.gethostname()}/{pid}/abcd"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are read from /proc")
def test_a_killed_process_is_gone_before_and_after_it_is_reaped() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert not owner_is_dead(owner(child.pid))
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not owner_is_dead(owner(child.pid)):  # a zombie until waited for
            assert time.monotonic() < deadline, "a killed, unreaped child still looks alive"
            time.sleep(0.01)
        assert child.poll() is not None  # reaped now
        assert owner_is_dead(owner(child.pid))
    finally:
        child.kill()
        child.wait()


def test_this_process_and_other_hosts_are_never_taken_for_gone() -> None:
    assert not owner_is_dead(new_owner_id())
    assert not owner_is_dead("another-host/1/abcd")
    assert not owner_is_dead("not an owner id")
