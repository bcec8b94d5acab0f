"""What the blocking objects share: a ``with`` block closes them."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """``with obj:`` returns it and calls ``obj.close()`` on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
