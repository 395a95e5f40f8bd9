"""Client events encoded once: big state lists (/members, /state) answered without
building and encoding thousands of dicts per request.

Design note
-----------
A state event's client form (``EventSerializer`` without a reader: no transaction
id, no bundled relations) depends on the stored event, on the state event it
replaced (``unsigned.replaces_state`` and ``prev_content``), and on the clock
through ``unsigned.age`` alone. So everything before the age's value is encoded
once, the *head*, and each answer appends the age and the two closing braces::

    {"content":{...},"event_id":"$e","sender":"@u:hs",...,"unsigned":{"prev_content":{...},"age":
                                                                                     + b"1234}}"

The head lives on the ``StoredEvent`` (``client_json``), so it needs no
invalidation of its own: a stored event never changes, and the one change to an
event row (a redaction applied, an erasure) makes the event store drop the
object (``EventStore.forget``, also in other processes) and load a new one with
no head. The head also keeps the replaced event's object it was built from and is
built again when the store hands out another (that event changed, or was evicted
and loaded again). A redacted event is never kept: its ``redacted_because`` has an
age of its own. The answer is one JSON array, embedded in the response as an
``orjson.Fragment`` (copied as is).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(body: Any) -> bytes:
    """Compact JSON; the standard library for what orjson refuses (integers past 64
    bits, which old room versions' content may hold)."""
    try:
        return orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def head(event: dict[str, Any], unsigned: dict[str, Any]) -> bytes:
    """The JSON of ``event`` (which has no ``unsigned``) with ``unsigned`` and the
    start of its ``age`` member, open for ``with_age``."""
    body = encode(event)
    rest = encode(unsigned)[1:-1] + b"," if unsigned else b""
    return body[:-1] + b',"unsigned":{' + rest + b'"age":'


class Encoded:
    """One event's JSON, encoded: put into a bigger answer (a /sync) as is. The HTTP
    shell's encoder embeds any object with ``json_bytes`` so (``encode_json``), also on
    its standard-library path, which a Fragment would break."""

    __slots__ = ("json_bytes",)

    def __init__(self, json_bytes: bytes) -> None:
        self.json_bytes = json_bytes


def with_age(head_bytes: bytes, age: int) -> bytes:
    """The complete event: its head, its age, and the braces of ``unsigned`` and the event."""
    return head_bytes + b"%d}}" % age


def array(parts: list[bytes]) -> Encoded:
    """Encoded events as one JSON array, embedded whole: a big room's /sync state is
    one object for the response encoder, not one per event."""
    return Encoded(b"[" + b",".join(parts) + b"]")
