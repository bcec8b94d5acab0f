"""``--log-level``: log records to stderr, each naming its job (or "-")."""

from __future__ import annotations

import logging
import sys
from typing import Any

from .._logging import JobLogFilter


def add_log_level_option(parser: Any, default: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help=f"what conveyor and your handlers log (default {default})",
    )


def configure_logging(level: str) -> None:
    """Log records to stderr, each naming its job; above the live bars on a terminal."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        from ._render import console

        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s %(job_id)s %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(job_id)s %(message)s")
        )
    handler.addFilter(JobLogFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
