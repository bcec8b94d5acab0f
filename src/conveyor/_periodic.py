"""Periodic queues: when their ticks fall, and the one job id each tick gets.

``Queue.periodic`` is a number of seconds (ticks at multiples of it since the Unix epoch)
or a cron expression, evaluated in UTC with croniter (``pip install conveyor[cron]``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import msgspec

from ._errors import ValidationError
from ._limits import shown


class Schedule(Protocol):
    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        ...

    def latest(self, t: float, count: int) -> list[float]:
        """Up to ``count`` ticks at or before ``t``, oldest first."""
        ...


class Every:
    """A tick every ``period`` seconds, aligned to the epoch so all processes agree."""

    def __init__(self, period: float) -> None:
        self.period = period

    def next_after(self, t: float) -> float:
        return (math.floor(t / self.period) + 1) * self.period

    def latest(self, t: float, count: int) -> list[float]:
        last = math.floor(t / self.period) * self.period
        return [last - i * self.period for i in reversed(range(count))]


class Cron:
    """Ticks of a cron expression (five fields; croniter's extensions allowed), in UTC."""

    def __init__(self, expression: str, field: str = "periodic") -> None:
        try:
            from croniter import croniter  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - depends on the installation
            raise ValidationError(
                f"{field}: cron schedules need croniter: pip install 'conveyor[cron]'"
            ) from None
        if not croniter.is_valid(expression):
            raise ValidationError(f"{field} is not a valid cron expression: {shown(expression)}")
        self._croniter = croniter
        self.expression = expression

    def next_after(self, t: float) -> float:
        return float(self._croniter(self.expression, t).get_next(float))

    def latest(self, t: float, count: int) -> list[float]:
        ticks: list[float] = []
        it = self._croniter(self.expression, self.next_after(t))
        while len(ticks) < count:
            ticks.append(float(it.get_prev(float)))
        return list(reversed(ticks))


class PeriodicQueue(msgspec.Struct, frozen=True):
    """A periodic queue as the engine runs it: its schedule and encoded payload."""

    name: str
    schedule: Any  # a Schedule
    payload: bytes
    catch_up: int


def parse_schedule(name: str, spec: Any) -> Schedule:
    if isinstance(spec, str):
        return Cron(spec, name)
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise ValidationError(f"{name} must be a cron expression or seconds, not {shown(spec)}")
    if not math.isfinite(spec) or spec <= 0:
        raise ValidationError(f"{name} must be > 0 seconds, not {shown(spec)}")
    return Every(float(spec))
