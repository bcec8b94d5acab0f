"""What a location string is, and how to print it: a leaf module, so that the CLI and the
stores share it without the CLI importing a store."""

from __future__ import annotations

import os
import re

URL_SCHEMES = ("postgresql://", "postgres://")


def without_password(location: str | os.PathLike[str]) -> str:
    """The location as it may be printed: a URL's password masked out."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1@", str(location))


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)
