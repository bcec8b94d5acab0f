"""The installed version of conveyor (a leaf module: the engine reports it too)."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("conveyor")
except PackageNotFoundError:  # pragma: no cover - run from a source tree, not installed
    VERSION = "0+unknown"
