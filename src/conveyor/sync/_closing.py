"""What the blocking objects share: a ``with`` block closes them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closing(ABC):
    """``with obj:`` returns it and calls ``obj.close()`` on the way out."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds (each subclass says what)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
