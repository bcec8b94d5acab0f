"""Job ids: 26 characters of Crockford's base32 that sort by creation, and whose first
ten characters are the millisecond they were made in (ULID)."""

from __future__ import annotations

import itertools
import time

from conveyor._ids import IdGenerator

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_ids_sort_by_creation_and_carry_their_millisecond() -> None:
    ids = IdGenerator()
    before = time.time_ns() // 1_000_000
    made = [ids.new() for _ in range(50_000)]  # spans many milliseconds
    after = time.time_ns() // 1_000_000
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in made)
    stamps = [_decode(i[:10]) for i in made]
    assert before <= stamps[0] <= stamps[-1] <= after
    assert len(set(stamps)) > 1  # so the time part was re-encoded along the way
    # Within one millisecond the random part counts up by one.
    for a, b in itertools.pairwise(made):
        if a[:10] == b[:10]:
            assert _decode(b[10:]) == _decode(a[10:]) + 1


def test_the_first_id_of_a_millisecond_borrowing_the_next_one_keeps_order() -> None:
    ids = IdGenerator()
    first = ids.new()
    ids._last_rand = (1 << 80) - 1  # the random part is exhausted for this millisecond
    ids._last_ms += 5  # and the clock is behind it (as after a burst)
    second = ids.new()
    assert second > first
    assert _decode(second[:10]) == ids._last_ms
