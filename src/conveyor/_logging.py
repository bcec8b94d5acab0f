"""Logging with the job on every record: conveyor's own loggers, and yours if you ask.

Records logged while a handler runs (in its task, in tasks it starts, or in a sync
handler's thread) carry ``record.job_id`` and ``record.queue``; other records carry
``None`` there, so a format string can always use ``%(job_id)s``. conveyor's loggers
("conveyor", "conveyor.engine", "conveyor.server", "conveyor.client") have this filter
already; add it to your own handler to get the same on every record you log::

    handler.addFilter(conveyor.JobLogFilter())
"""

from __future__ import annotations

import logging

from ._queue import current_context


class JobLogFilter(logging.Filter):
    """Sets ``job_id`` and ``queue`` on each record from the running job, if any.

    A record that already has them (passed with ``extra=``) keeps its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            ctx = current_context()
            record.job_id = None if ctx is None else ctx.job.id
            record.queue = None if ctx is None else ctx.job.queue
        return True


_FILTER = JobLogFilter()


def get_logger(name: str) -> logging.Logger:
    """A conveyor logger: every record it makes names its job (or None)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
