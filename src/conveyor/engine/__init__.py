"""The scheduler: claiming, executing, and the loops that keep leases and events moving."""

from ._engine import Engine as Engine
from ._engine import transition_event as transition_event
from ._shutdown import stop_workers as stop_workers
from ._upkeep import purge as purge

__all__ = ("Engine", "purge", "stop_workers", "transition_event")
