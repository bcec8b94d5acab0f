"""Sortable unique job ids: ULIDs (48-bit millisecond time + 80 random bits, in
26 characters of Crockford's base32), so ids sort by creation time."""

from __future__ import annotations

import hashlib
import os
import random
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # no I, L, O, U; in ascending ASCII order
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs = 130 bits, the top 2 always zero
_RANDOM_MAX = (1 << 80) - 1


class IdGenerator:
    """Makes ids that sort by creation time, strictly increasing within a process.

    Within one millisecond the random part is incremented rather than redrawn, so ids
    made in a burst keep their order (ULID's "monotonic" variant).
    """

    __slots__ = ("_last_ms", "_last_rand", "_prefix", "_random")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_rand = 0
        self._prefix = ""  # the time part of ids of millisecond _last_ms
        # Seeded from the OS once: ids need uniqueness, not secrecy, and a syscall per id
        # would be most of its cost.
        self._random = random.Random(os.urandom(32))

    def new(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            rand = self._last_rand + 1
            if rand > _RANDOM_MAX:  # 2**79 ids in one millisecond: borrow the next one
                ms += 1
                rand = self._random.getrandbits(79)
        else:
            rand = self._random.getrandbits(79)  # < 2**79 leaves room to increment
        if ms != self._last_ms:
            # The first 10 characters encode the time alone (the 5 pairs above bit 80),
            # the other 16 the random part: an id of the same millisecond encodes 8
            # pairs, not 13 (ids are made per job, in bursts).
            self._prefix = _encode(ms << 80)[:10]
        self._last_ms, self._last_rand = ms, rand
        p = _PAIRS
        return (
            self._prefix
            + p[rand >> 70 & 1023]
            + p[rand >> 60 & 1023]
            + p[rand >> 50 & 1023]
            + p[rand >> 40 & 1023]
            + p[rand >> 30 & 1023]
            + p[rand >> 20 & 1023]
            + p[rand >> 10 & 1023]
            + p[rand & 1023]
        )


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def derived_id(ms: int, seed: str) -> str:
    """The id for a job that must exist once only (a periodic job's tick): its time part
    is ``ms``, its random part a hash of ``seed``, so every process derives the same id
    and the store keeps just one."""
    rand = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10]) >> 1
    return _encode((ms << 80) | rand)
