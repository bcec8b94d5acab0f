"""The scheduler: claiming, executing, and the loops that keep leases and events moving."""

from ._bulk import cancel_matching as cancel_matching
from ._bulk import rerun_matching as rerun_matching
from ._engine import Engine as Engine
from ._publisher import transition_event as transition_event
from ._workers import is_lost as is_lost

__all__ = ("Engine", "cancel_matching", "is_lost", "rerun_matching", "transition_event")
