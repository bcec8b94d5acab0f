"""What enters conveyor, checked where it enters: the size limits, and the checks of text
and numbers that every boundary (enqueue options, handler reports, wire requests, CLI
arguments) shares, so that nothing reaches a store that the store cannot hold or give
back.

Two kinds of check. What a caller passes (an enqueue option, a progress report) is
*refused*: :class:`ValidationError` naming the field, nothing stored. What a handler's
failure produces (an exception's text, its traceback) cannot be refused, since the job
must still end: it is *made storable* instead, cut to its limit with a note that says so.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import msgspec.structs

from ._errors import ValidationError
from ._models import EnqueueOptions
from ._states import JobStatus

KIB: Final = 1024
MIB: Final = 1024 * KIB

MAX_INT64: Final = 2**63 - 1
MAX_DELAY: Final = 100 * 365 * 86400.0  # seconds: a delay, an ``at`` or a timeout beyond is refused
MAX_WORKER_COUNT: Final = 10_000  # tasks per queue and process, created up front
MAX_ATTEMPTS: Final = 1_000_000
PRIORITY_RANGE: Final = (-(2**31), 2**31 - 1)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Size limits, in bytes of UTF-8 (JSON for payloads and results), applied where each
    value enters: ``Runtime(..., limits=Limits(result_bytes=8 * MIB))``.

    ========================== ========= ===========================================
    limit                      default   over it
    ========================== ========= ===========================================
    ``payload_bytes``          1 MiB     enqueue refused (ValidationError)
    ``result_bytes``           1 MiB     the job fails, saying so
    ``progress_message_bytes`` 4 KiB     report_progress raises ValidationError
    ``error_bytes``            16 KiB    the error text is cut, saying so
    ``traceback_bytes``        64 KiB    the traceback is cut (its last part kept)
    ``unique_key_bytes``       1 KiB     enqueue refused (ValidationError)
    ``created_by_bytes``       1 KiB     enqueue refused (ValidationError)
    ``meta_bytes``             4 KiB     enqueue refused (ValidationError)
    ``tags_bytes``             1 KiB     enqueue refused (ValidationError)
    ========================== ========= ===========================================

    ``meta_bytes`` and ``tags_bytes`` measure the JSON of the whole mapping and list
    (``{"tenant":"acme"}`` is 17 bytes): they ride on every read of the job, its
    claim by a worker included, so they stay small beside a payload.
    """

    payload_bytes: int = MIB
    result_bytes: int = MIB
    progress_message_bytes: int = 4 * KIB
    error_bytes: int = 16 * KIB
    traceback_bytes: int = 64 * KIB
    unique_key_bytes: int = KIB
    created_by_bytes: int = KIB
    meta_bytes: int = 4 * KIB
    tags_bytes: int = KIB

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"Limits.{field} must be an int >= 1, not {shown(value)}")
        # An error text shorter than this could not even say that it was cut.
        for field in ("error_bytes", "traceback_bytes"):
            if getattr(self, field) < 128:
                raise ValidationError(f"Limits.{field} must be >= 128")


DEFAULT_LIMITS: Final = Limits()

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 60, 60, 40


def shown(value: Any) -> str:
    """``value`` for an error message: a short repr, whatever it is (a value nested
    thousands deep, or one whose ``__repr__`` raises, must not break the refusal)."""
    try:
        return _SHOWN.repr(value)
    except Exception:
        return f"<a {type(value).__name__}>"


def text(field: str, value: Any, max_bytes: int) -> str:
    """``value`` as a string a store can hold and give back, or ValidationError: a str,
    valid Unicode (no lone surrogates), no NUL (PostgreSQL text cannot hold one), at most
    ``max_bytes`` bytes of UTF-8."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} is not valid Unicode text (a lone surrogate at {exc.start})"
        ) from None
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character")
    if size > max_bytes:
        raise ValidationError(f"{field} is {size} bytes, over the {max_bytes}-byte limit")
    return value


def optional_text(field: str, value: Any, max_bytes: int) -> str | None:
    return None if value is None else text(field, value, max_bytes)


def name(field: str, value: Any) -> str:
    """A queue name or a job id: non-empty text of at most 200 bytes."""
    checked = text(field, value, 200)
    if not checked:
        raise ValidationError(f"{field} must not be empty")
    return checked


MAX_LABEL_CHARS: Final = 64
_LABEL: Final = re.compile(rf"[A-Za-z0-9_.:/-]{{1,{MAX_LABEL_CHARS}}}")
LABEL_RULE: Final = f"1 to {MAX_LABEL_CHARS} ASCII letters, digits or any of _ . : / -"


def label(field: str, value: Any) -> str:
    """A tag or a meta key: 1 to 64 ASCII letters, digits and ``_ . : / -``. Narrow on
    purpose: labels travel in URLs (``?tag=import&meta.tenant=acme``), CLI arguments
    (``--meta key=value``) and the dashboard, where none of these needs quoting."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, not {type(value).__name__}")
    if _LABEL.fullmatch(value) is None:
        raise ValidationError(f"{field} must be {LABEL_RULE}, not {shown(value)}")
    return value


def meta(field: str, value: Any, max_bytes: int) -> dict[str, str]:
    """A job's meta, or a list filter on it, checked: a mapping of labels (see
    ``label``) to text (valid Unicode, no NUL), at most ``max_bytes`` of JSON in all.
    None is no meta."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{field} must be a mapping of str to str, not {type(value).__name__}"
        )
    checked: dict[str, str] = {}
    for key, item in value.items():
        checked[label(f"{field} key", key)] = text(f"{field}[{key!r}]", item, max_bytes)
    _within(field, checked, max_bytes, "Limits.meta_bytes")
    return checked


def tags(field: str, value: Any, max_bytes: int) -> list[str]:
    """A job's tags, or a list filter on them, checked: an iterable (not a string) of
    labels (see ``label``), at most ``max_bytes`` of JSON in all; a repeated tag is
    kept once, where it first appears. None is no tags."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(f"{field} must be a list of strings, not {shown(value)}")
    checked: dict[str, None] = {}  # a dict: ordered, and a repeat kept once
    for index, tag in enumerate(value):
        if index * 3 > max_bytes:  # each tag is at least '"t",' of JSON (an endless
            # iterable stops here, repeats counted)
            raise ValidationError(f"{field} holds too many tags for the {max_bytes}-byte limit")
        checked[label(f"{field}[{index}]", tag)] = None
    found = list(checked)
    _within(field, found, max_bytes, "Limits.tags_bytes")
    return found


def _within(field: str, value: Any, max_bytes: int, limit: str) -> None:
    size = len(_json.encode(value))
    if size > max_bytes:
        raise ValidationError(
            f"{field} is {size} bytes of JSON, over the {max_bytes}-byte limit ({limit})"
        )


_json: Final = msgspec.json.Encoder()


def number(field: str, value: Any) -> int | float:
    """A finite int or float (not a bool), an int within 64 bits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number, not {shown(value)}")
    if isinstance(value, int) and not -MAX_INT64 - 1 <= value <= MAX_INT64:
        raise ValidationError(f"{field} is out of range (64-bit)")
    return value


def integer(field: str, value: Any, low: int, high: int) -> int:
    """An int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValidationError(f"{field} must be from {low} to {high}, not {value}")
    return value


def storable(value: str, max_bytes: int, *, keep: str = "head") -> str:
    """``value`` made storable whatever it holds: lone surrogates and NULs replaced, and
    cut to ``max_bytes`` of UTF-8 with a note of how much was cut. ``keep="tail"`` keeps
    the end instead (of a traceback, the frames nearest the error)."""
    data = value.encode("utf-8", "replace").replace(b"\x00", b"\\x00")
    if len(data) <= max_bytes:
        return data.decode("utf-8")
    note = f" [cut to the {max_bytes}-byte limit from {len(data)} bytes] "
    room = max_bytes - len(note)
    if keep == "head":
        return data[:room].decode("utf-8", "ignore") + note.rstrip()
    return note.lstrip() + data[len(data) - room :].decode("utf-8", "ignore")


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, even one whose ``str()`` raises."""
    kind = type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        return f"{kind} (its message could not be read)"
    return f"{kind}: {message}" if message else kind


def _positive_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValidationError(f"{name} must be a number of seconds, not {shown(value)}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        raise ValidationError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {shown(value)}"
        )
    return float(value)


def seconds(name: str, value: Any) -> float:
    """A duration >= 0 given as seconds or a timedelta."""
    return _positive_seconds(name, value, allow_zero=True)


def bounded_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A duration (seconds or a timedelta) of at most MAX_DELAY, > 0 (or >= 0)."""
    checked = _positive_seconds(name, value, allow_zero=allow_zero)
    if checked > MAX_DELAY:
        raise ValidationError(f"{name} must be at most {MAX_DELAY:.0f} seconds (100 years)")
    return checked


def optional_seconds(name: str, value: Any) -> float | None:
    """None, or a duration >= 0 (a wait's timeout)."""
    return None if value is None else seconds(name, value)


_STATUSES: Final = {s.value: s for s in JobStatus}


def statuses(field: str, values: Any) -> frozenset[JobStatus]:
    """Statuses given as JobStatus values or their strings, checked."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValidationError(f"{field} must be a list of statuses, not {shown(values)}")
    found: set[JobStatus] = set()
    for value in values:
        # Looked up, not JobStatus(value): that formats a refused value with repr(),
        # which a list nested thousands deep overflows.
        status = _STATUSES.get(value) if isinstance(value, str) else None
        if status is None:
            raise ValidationError(
                f"{field} must hold statuses ({', '.join(JobStatus)}), not {shown(values)}"
            )
        found.add(status)
    return frozenset(found)


def enqueue_options(
    options: EnqueueOptions, now: float, limits: Limits
) -> tuple[float | None, EnqueueOptions]:
    """Check every option of an enqueue (ValidationError naming the first refused) and
    return when the job falls due (None: now) and the options as checked (``meta`` a
    dict, ``tags`` a list without repeats, each None when empty). The Runtime checks
    with its limits, the Client (before sending) with no size limits, as the server
    applies its own."""
    optional_text("created_by", options.created_by, limits.created_by_bytes)
    integer("priority", options.priority, *PRIORITY_RANGE)
    if options.max_attempts is not None:
        integer("max_attempts", options.max_attempts, 1, MAX_ATTEMPTS)
    if options.timeout is not None:
        bounded_seconds("timeout", options.timeout)
    if options.unique_key is not None and not text(
        "unique_key", options.unique_key, limits.unique_key_bytes
    ):
        raise ValidationError("unique_key must not be empty")
    checked_meta = meta("meta", options.meta, limits.meta_bytes)
    checked_tags = tags("tags", options.tags, limits.tags_bytes)
    if (checked_meta or None) != options.meta or (checked_tags or None) != options.tags:
        options = msgspec.structs.replace(
            options, meta=checked_meta or None, tags=checked_tags or None
        )
    delay, at = options.delay, options.at
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both")
    scheduled_at = None
    if delay is not None:
        scheduled_at = now + bounded_seconds("delay", delay, allow_zero=True)
    elif at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValidationError("at must be a timezone-aware datetime")
        try:
            scheduled_at = at.timestamp()
        except (OverflowError, ValueError, OSError) as exc:
            raise ValidationError(f"at is out of range: {exc}") from None
        if scheduled_at > now + MAX_DELAY:
            raise ValidationError("at must be at most 100 years from now")
    due = None if scheduled_at is None or scheduled_at <= now else scheduled_at
    return due, options


MAX_LIST_LIMIT: Final = 1000  # jobs per list_jobs page, at most


def list_options(status: Any, limit: Any, cursor: Any) -> tuple[JobStatus | None, int, str | None]:
    """list_jobs's filters, checked: a known status, a page size from 1 to
    MAX_LIST_LIMIT, a cursor that is a job id."""
    if status is not None:
        try:
            status = JobStatus(status)
        except (ValueError, TypeError):
            raise ValidationError(f"unknown status {shown(status)}") from None
    integer("limit", limit, 1, MAX_LIST_LIMIT)
    return status, limit, None if cursor is None else name("cursor", cursor)


def list_filters(
    tag_filter: Any, meta_filter: Any, limits: Limits
) -> tuple[list[str], dict[str, str]]:
    """list_jobs's filters on what jobs were enqueued with, checked as ``tags`` and
    ``meta`` of an enqueue are (a filter no job could match is refused, not run)."""
    return tags("tags", tag_filter, limits.tags_bytes), meta("meta", meta_filter, limits.meta_bytes)
