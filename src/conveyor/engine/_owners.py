"""Lease owners: who holds a running job's lease, and whether that process is gone."""

from __future__ import annotations

import os
import secrets
import socket


def new_owner_id() -> str:
    """``host/pid/random``: unique per runtime; host and pid let a restarted worker on the
    same machine tell that a lease's owner process is gone."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner ran on this host and its process no longer exists."""
    host, _, rest = owner.partition("/")
    pid_text, _, _ = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another runtime in this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process killed but not yet reaped by its parent still answers kill(pid, 0); on
    Linux its state says it is gone (elsewhere: taken as alive until reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (name) S ...": the state follows the last ")" (a name may hold one).
            return stat.read().rpartition(b")")[2].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False
