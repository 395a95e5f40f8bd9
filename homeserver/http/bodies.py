"""Reading request bodies and fields strictly, with Matrix errors for bad input.

Shared by the client and federation APIs: UTF-8 JSON without NaN or lone
surrogates, size limits enforced before reading, typed field readers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from homeserver.errors import MatrixError, bad_json, invalid_param, not_json, too_large

# The largest JSON body an app's handlers read (config limits.max_json_body_bytes), set
# on the client and federation apps by the composition root.
MAX_JSON_BODY_BYTES = web.AppKey("max_json_body_bytes", int)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


class BadJsonBytes(ValueError):
    """Bytes that are not strict JSON; the message says why (never quotes the input)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BadJsonBytes("Content has an object with a duplicate key")
    return obj


def decode_json_bytes(raw: bytes | bytearray, *, unique_keys: bool = False) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no lone surrogates, nesting the parser can
    take; ``unique_keys``: no object names a key twice. ``BadJsonBytes`` otherwise.

    Duplicate keys matter where JSON is signed or hashed (federation): two
    readers taking different values would disagree on an event.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJsonBytes("Content is not valid JSON") from None
    return _decode_text(text, unique_keys)


def decode_json_buffer(buf: bytearray, *, unique_keys: bool = False) -> Any:
    """``decode_json_bytes`` that consumes ``buf``: it is emptied once decoded to text,
    before the parse, so a big answer (a room's state: megabytes) is not held as
    bytes, text and objects at once."""
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJsonBytes("Content is not valid JSON") from None
    finally:
        buf.clear()
    return _decode_text(text, unique_keys)


def _decode_text(text: str, unique_keys: bool) -> Any:
    hook = _unique_object if unique_keys else None
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=hook)
    except BadJsonBytes:
        raise
    except ValueError:
        raise BadJsonBytes("Content is not valid JSON") from None
    except RecursionError:
        raise BadJsonBytes("Content is nested too deeply") from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise BadJsonBytes("Content contains an unpaired UTF-16 surrogate")
    return value


def parse_json_bytes(raw: bytes, *, unique_keys: bool = False) -> Any:
    """Parse a request body strictly (``decode_json_bytes``); 400 ``M_NOT_JSON`` if bad.

    ``\\ud800``-style escapes that do not form a pair decode to strings that
    cannot be encoded as UTF-8 again (nor stored, nor answered), so they are
    refused here once rather than failing later inside a handler.
    """
    try:
        return decode_json_bytes(raw, unique_keys=unique_keys)
    except BadJsonBytes as e:
        raise not_json(str(e)) from None


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing with 413 before reading when it is over ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, or a Matrix error (M_NOT_JSON / M_BAD_JSON)."""
    limit = request.app[MAX_JSON_BODY_BYTES]
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise not_json("Request body is empty; expected a JSON object")
    body = parse_json_bytes(raw)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object")
    return body


# --- small typed readers for JSON fields ------------------------------------


def opt_str(body: dict[str, Any], key: str) -> str | None:
    """A string field; NUL is refused (no identifier or name may hold it, and
    PostgreSQL cannot store it in TEXT)."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    if value is not None and "\x00" in value:
        raise invalid_param(f"'{key}' must not contain NUL characters")
    return value


def req_str(body: dict[str, Any], key: str) -> str:
    value = opt_str(body, key)
    if value is None:
        raise bad_json(f"'{key}' is required")
    return value


def opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_json(f"'{key}' must be a boolean")
    return value


def opt_dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"'{key}' must be an object")
    return value


def query_int(request: web.Request, key: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter clamped to [lo, hi]; M_INVALID_PARAM if not a number."""
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be an integer") from None
    return max(lo, min(hi, value))
