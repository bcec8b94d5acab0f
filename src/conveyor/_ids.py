"""Sortable unique job ids (ULIDs: 48-bit millisecond time + 80 random bits, base32)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RANDOM_MAX = (1 << 80) - 1


class IdGenerator:
    """Makes 26-character ids that sort by creation time, strictly increasing per process.

    Within one millisecond the random part is incremented rather than redrawn, so ids
    made in a burst keep their order (the ULID "monotonic" variant).
    """

    __slots__ = ("_last_ms", "_last_rand")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            rand = self._last_rand + 1
            if rand > _RANDOM_MAX:  # 2**80 ids in one millisecond: borrow the next one
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        self._last_ms, self._last_rand = ms, rand
        value = (ms << 80) | rand
        chars = []
        for _ in range(26):
            chars.append(_ALPHABET[value & 31])
            value >>= 5
        return "".join(reversed(chars))
