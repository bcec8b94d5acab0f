"""The scheduler: claiming, executing, and the loops that keep leases and events moving."""

from ._engine import Engine as Engine
from ._engine import transition_event as transition_event
from ._retention import purge as purge

__all__ = ("Engine", "purge", "transition_event")
