"""The scheduler: claiming, executing, and the loops that keep leases and events moving."""

from ._engine import Engine as Engine

__all__ = ("Engine",)
