"""Logging with the job on every record: conveyor's own loggers, and yours if you ask.

Records logged while a handler runs (in its task, in tasks it starts, or in a sync
handler's thread) carry ``record.job_id`` and ``record.queue``; other records carry
``"-"`` there (a log line outside a job reads ``- message``, not ``None message``), so
a format string can always use ``%(job_id)s``. conveyor's loggers
("conveyor", "conveyor.engine", "conveyor.server", "conveyor.client") have this filter
already; add it to your own handler to get the same on every record you log::

    handler.addFilter(conveyor.JobLogFilter())
"""

from __future__ import annotations

import logging

from ._context import current_context

NO_JOB = "-"


class JobLogFilter(logging.Filter):
    """Sets ``job_id`` and ``queue`` on each record from the running job ("-" if none).

    A record that already has them (passed with ``extra=``) keeps its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            ctx = current_context()
            record.job_id = NO_JOB if ctx is None else ctx.job.id
            record.queue = NO_JOB if ctx is None else ctx.job.queue
        return True


_FILTER = JobLogFilter()


def get_logger(name: str) -> logging.Logger:
    """A conveyor logger: every record it makes names its job (or "-")."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
