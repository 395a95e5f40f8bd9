"""Canonical JSON and unpadded Base64: the byte forms that hashes and signatures cover.

Spec: appendices "Canonical JSON", "Unpadded Base64", "URL-safe unpadded Base64".
Encoding is delegated to the ``canonicaljson`` package; whether a value is
*allowed* in canonical JSON (integer range, no floats) is checked by
``homeserver.events.validate``, not here, so encoding stays one C-speed call.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import canonicaljson
import orjson

# Appendices "Canonical JSON": integers must lie in [-(2**53)+1, (2**53)-1].
CANONICAL_INT_MIN = -(2**53) + 1
CANONICAL_INT_MAX = 2**53 - 1


def encode_canonical_json(obj: object) -> bytes:
    """Encode ``obj`` as canonical JSON (appendices "Canonical JSON").

    Shortest UTF-8 form, keys sorted by code point. Raises ``ValueError`` for
    NaN/Infinity and ``UnicodeEncodeError`` for lone surrogates.
    """
    return canonicaljson.encode_canonical_json(obj)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _integral_float_to_int(text: str) -> int | float:
    """``1e10`` and ``-0.0`` denote integers; canonical JSON writes them as such."""
    value = float(text)
    return int(value) if value.is_integer() else value


def decode_json(data: str | bytes) -> Any:
    """Parse JSON the way canonical JSON sees numbers (appendices "Canonical JSON" examples).

    Integral numbers written with a fraction or exponent become ``int``
    (``1e10`` -> ``10000000000``); other fractions stay ``float`` so the
    format checks can reject them. NaN, Infinity and pathological nesting
    raise ``ValueError``.
    """
    try:
        return json.loads(data, parse_float=_integral_float_to_int, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def decode_stored_json(data: str | bytes, strict_canonical: bool) -> Any:
    """Parse an event this server stored with ``encode_canonical_json``.

    ``strict_canonical`` (the room version enforces canonical JSON, v6+): the event
    passed ``validate.check_canonical_json_values``, so it holds no floats and no
    integer past 2**53, and orjson reads it exactly. orjson shares the key strings of
    every document it parses (a cache of short keys), so a cache of thousands of
    loaded events holds ``"content"``, ``"sender"`` ... once rather than once per
    event, and it parses several times faster. Older room versions may hold any
    number (orjson would turn an integer past 64 bits into a float) and go through
    ``decode_json``, as does anything orjson refuses.
    """
    if strict_canonical:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return decode_json(data)


def encode_base64(data: bytes, urlsafe: bool = False) -> str:
    """Unpadded Base64 (appendices "Unpadded Base64"); ``urlsafe`` uses ``-``/``_``.

    URL-safe is used for event ids and v12 room ids (rooms "Event IDs").
    """
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.rstrip(b"=").decode("ascii")


def decode_base64(text: str, urlsafe: bool = False) -> bytes:
    """Decode Base64 with or without ``=`` padding (the spec says implementations SHOULD).

    The alphabet is strict: standard (``+``/``/``) unless ``urlsafe`` (``-``/``_``).
    Raises ``ValueError`` on anything that is not valid Base64.
    """
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1 or len(text) - len(stripped) > 2:
        raise ValueError("invalid base64 length")
    if urlsafe:
        if "+" in stripped or "/" in stripped:
            raise ValueError("invalid character in url-safe base64")
        stripped = stripped.replace("-", "+").replace("_", "/")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except ValueError as e:  # binascii.Error, or non-ASCII input
        raise ValueError(f"invalid base64: {e}") from None
