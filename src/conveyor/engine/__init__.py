"""The scheduler: claiming, executing, and the loops that keep leases and events moving."""

from ._engine import Engine as Engine
from ._engine import transition_event as transition_event

__all__ = ("Engine", "transition_event")
