"""The only module that builds msgspec encoders and decoders; each is built once."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import msgspec.structs

from ._errors import ValidationError
from ._models import Progress

json_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()
_progress_decoder = msgspec.json.Decoder(Progress)
_meta_decoder = msgspec.json.Decoder(dict[str, str])
_tags_decoder = msgspec.json.Decoder(list[str])
_typed_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
NULL = b"null"


def encode(value: Any) -> bytes:
    return json_encoder.encode(value)


def decode(data: bytes | str) -> Any:
    return _any_decoder.decode(data)


def decode_progress(data: bytes | str) -> Progress:
    return _progress_decoder.decode(data)


def decode_meta(data: bytes | str) -> dict[str, str]:
    return _meta_decoder.decode(data)


def decode_tags(data: bytes | str) -> list[str]:
    return _tags_decoder.decode(data)


def decoder_for(tp: Any) -> msgspec.json.Decoder[Any]:
    """A cached decoder for a payload type."""
    dec = _typed_decoders.get(tp)
    if dec is None:
        dec = _typed_decoders[tp] = msgspec.json.Decoder(tp)
    return dec


def holds_non_finite(value: Any, data: bytes) -> bool:
    """Whether ``value`` (encoded as ``data``) holds an inf or a NaN, which msgspec writes
    as ``null``: stored so, it would read back as something else. The walk runs only
    when ``data`` has a ``null`` in it, so most values cost one ``in``."""
    if b"null" not in data:
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, msgspec.Struct):
            stack.extend(msgspec.structs.astuple(item))
    return False


def encode_value(value: Any, what: str, max_bytes: int, limit: str) -> bytes:
    """``value`` as the JSON a store keeps, or ValidationError saying why it cannot be:
    not JSON, nested too deeply, holding inf or nan (which msgspec would write as null),
    or over ``max_bytes`` (the ``limit`` named in the message). The one check of every
    JSON value conveyor stores: payloads and handlers' results."""
    if value is None and max_bytes >= len(NULL):
        return NULL  # what most handlers return: no encoding, no walk for a NaN
    try:
        data = json_encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(
            f"{what} cannot be stored as JSON (not JSON-serialisable: {exc})"
        ) from None
    except RecursionError:
        raise ValidationError(f"{what} is nested too deeply to encode as JSON") from None
    if holds_non_finite(value, data):
        raise ValidationError(f"{what} holds inf or nan, which JSON cannot hold")
    if len(data) > max_bytes:
        raise ValidationError(
            f"{what} is {len(data)} bytes of JSON, over the {max_bytes}-byte limit ({limit})"
        )
    return data


def encode_payload(payload: Any, payload_type: Any, max_bytes: int) -> bytes:
    """Validate ``payload`` against ``payload_type`` and encode it as JSON.

    A dict and a Struct instance are checked the same way: encoded, then decoded as the
    queue's type, so a Struct built with wrong field types is caught too. Raises
    ValidationError naming the field that does not fit, or saying why the payload cannot
    be stored (see encode_value).
    """
    data = encode_value(payload, "payload", max_bytes, "Limits.payload_bytes")
    if payload_type is not Any:
        try:
            decoder_for(payload_type).decode(data)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"invalid payload: {exc}") from None
        except RecursionError:
            raise ValidationError("payload is nested too deeply to decode") from None
    return data
