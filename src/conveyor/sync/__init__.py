"""conveyor for code without an event loop: Django and Flask views, scripts, notebooks.

- :class:`Client` calls a conveyor server (``conveyor serve``, or a Runtime with
  ``serve=``) with the async client's methods, blocking, from any number of threads.
- :class:`Producer` enqueues straight into the queue database (a SQLite file or
  PostgreSQL), no server needed; workers in other processes run the jobs.

See docs/sync.md.
"""

from ._client import Client as Client
from ._events import Events as Events
from ._producer import Producer as Producer

__all__ = ("Client", "Events", "Producer")
