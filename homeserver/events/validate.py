"""Format checks on a PDU: step 1 of "Checks performed on receipt of a PDU".

Spec: server-server "Checks performed on receipt of a PDU" (step 1: "Is a
valid event"), the PDU schemas of rooms v10/v11/v12 (``pdu_v6``/``pdu_v11``/
``pdu_v12``), client-server "Size limits", and rooms v6+ "Canonical JSON"
(servers MUST strictly enforce it, so floats and out-of-range integers
anywhere in the event make it invalid).

These run on every event, local or remote, before hashes and signatures.
Cheap shape checks come first; the value walk and size encoding last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.events.canonical import (
    CANONICAL_INT_MAX,
    CANONICAL_INT_MIN,
    encode_canonical_json,
)
from homeserver.events.identifiers import (
    MAX_IDENTIFIER_BYTES,
    InvalidIdentifierError,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_user_id,
)
from homeserver.events.room_versions import RoomVersion

__all__ = [
    "MAX_AUTH_EVENTS",
    "MAX_PDU_BYTES",
    "MAX_PREV_EVENTS",
    "InvalidIdentifierError",
    "PduFormatError",
    "check_canonical_json_values",
    "check_pdu_format",
    "is_valid_event_id",
    "is_valid_localpart",
    "is_valid_room_alias",
    "is_valid_room_id",
    "is_valid_server_name",
    "is_valid_user_id",
    "parse_user_id",
]

# Room versions 1-5 do not enforce canonical JSON's integer range.
_INT64_MAX = 2**63 - 1
# Client-server "Size limits".
MAX_PDU_BYTES = 65536
# PDU schema (auth_events_prev_events_v4): "less than or equal to 10" / "20 events".
MAX_AUTH_EVENTS = 10
MAX_PREV_EVENTS = 20

_REQUIRED = (
    "type",
    "sender",
    "content",
    "depth",
    "origin_server_ts",
    "hashes",
    "signatures",
    "auth_events",
    "prev_events",
)


class PduFormatError(Exception):
    """The PDU does not match its room version's event format; it must be dropped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_pdu_format(
    pdu: Any, room_version: RoomVersion, encoded: Callable[[], bytes] | None = None
) -> None:
    """Raise ``PduFormatError`` unless ``pdu`` is a well-formed event of ``room_version``.
    ``encoded``: gives ``pdu``'s canonical JSON (kept for storing it), for its size."""
    if not isinstance(pdu, dict):
        raise PduFormatError("event is not a JSON object")
    for key in _REQUIRED:
        if key not in pdu:
            raise PduFormatError(f"missing key: {key}")
    _check_room_id(pdu, room_version)
    _check_short_string(pdu, "type")
    _check_sender(pdu["sender"])
    if "state_key" in pdu:
        _check_short_string(pdu, "state_key")
    if room_version.event_id_in_pdu:
        if "event_id" not in pdu:
            raise PduFormatError("missing key: event_id")
        _check_short_string(pdu, "event_id")
        if not is_valid_event_id(pdu["event_id"], room_version):
            raise PduFormatError("event_id: not a valid event id")
    elif "event_id" in pdu:
        _check_short_string(pdu, "event_id")
    if not isinstance(pdu["content"], dict):
        raise PduFormatError("content: not an object")
    # v1-v5 do not enforce canonical JSON: depth may go up to 2**63 - 1 there.
    top = CANONICAL_INT_MAX if room_version.strict_canonical_json else _INT64_MAX
    _check_int(pdu, "depth", minimum=0, maximum=top)
    _check_int(pdu, "origin_server_ts", minimum=-top, maximum=top)
    _check_event_id_list(pdu, "auth_events", MAX_AUTH_EVENTS, room_version)
    _check_event_id_list(pdu, "prev_events", MAX_PREV_EVENTS, room_version)
    _check_hashes(pdu["hashes"])
    _check_signatures(pdu["signatures"])
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise PduFormatError("unsigned: not an object")
    if not room_version.updated_redaction_rules and "redacts" in pdu:
        # pdu_v6: top-level "redacts" is an event id string.
        if not isinstance(pdu["redacts"], str):
            raise PduFormatError("redacts: not a string")
    if room_version.strict_canonical_json:
        check_canonical_json_values(pdu)
    _check_size(pdu, encoded)


def _check_room_id(pdu: dict[str, Any], room_version: RoomVersion) -> None:
    """``room_id`` is required, except on v12 create events where it must be absent."""
    if room_version.room_id_from_create_event and pdu["type"] == "m.room.create":
        if "room_id" in pdu:
            raise PduFormatError("room_id: not allowed on m.room.create in this room version")
        return
    if "room_id" not in pdu:
        raise PduFormatError("missing key: room_id")
    _check_short_string(pdu, "room_id")
    if not is_valid_room_id(pdu["room_id"], room_version):
        raise PduFormatError("room_id: not a valid room id for this room version")


def _check_short_string(pdu: dict[str, Any], key: str) -> None:
    """A string of at most 255 UTF-8 bytes (client-server "Size limits")."""
    value = pdu[key]
    if not isinstance(value, str):
        raise PduFormatError(f"{key}: not a string")
    # Fast path: 63 code points are at most 252 UTF-8 bytes, no need to encode.
    if len(value) > MAX_IDENTIFIER_BYTES // 4 and _utf8_size(value) > MAX_IDENTIFIER_BYTES:
        raise PduFormatError(f"{key}: longer than {MAX_IDENTIFIER_BYTES} bytes")


def _utf8_size(value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise PduFormatError("invalid unicode (lone surrogate)") from None


def _check_sender(sender: Any) -> None:
    """Historical localparts are allowed: remote users may still have them."""
    if not isinstance(sender, str):
        raise PduFormatError("sender: not a string")
    if _utf8_size(sender) > MAX_IDENTIFIER_BYTES:
        raise PduFormatError(f"sender: longer than {MAX_IDENTIFIER_BYTES} bytes")
    if not is_valid_user_id(sender, strict=False):
        raise PduFormatError("sender: not a valid user id")


def _check_int(pdu: dict[str, Any], key: str, minimum: int, maximum: int) -> None:
    value = pdu[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise PduFormatError(f"{key}: not an integer")
    if not minimum <= value <= maximum:
        raise PduFormatError(f"{key}: out of range")


def _check_event_id_list(
    pdu: dict[str, Any], key: str, limit: int, room_version: RoomVersion
) -> None:
    """Event ids (v3+), or ``[event_id, {"sha256": hash}]`` pairs (pdu_v1)."""
    value = pdu[key]
    if not isinstance(value, list):
        raise PduFormatError(f"{key}: not a list")
    if len(value) > limit:
        raise PduFormatError(f"{key}: more than {limit} entries")
    for entry in value:
        if room_version.event_id_in_pdu:
            if not isinstance(entry, list) or len(entry) != 2:
                raise PduFormatError(f"{key}: entry is not an [event_id, hashes] pair")
            event_id, hashes = entry
            # pdu_v1 requires "sha256", but Synapse sends {} for events it cannot
            # load, and nothing checks these hashes: v1 says to relax restrictions.
            if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256", ""), str):
                raise PduFormatError(f"{key}: entry's reference hashes are not an object")
        else:
            event_id = entry
        if not isinstance(event_id, str):
            raise PduFormatError(f"{key}: entry is not a string")
        if not is_valid_event_id(event_id, room_version):
            raise PduFormatError(f"{key}: entry is not a valid event id")


def _check_hashes(hashes: Any) -> None:
    """``hashes.sha256`` is required; a wrong value is a hash-check failure, not a format one."""
    if not isinstance(hashes, dict):
        raise PduFormatError("hashes: not an object")
    if not isinstance(hashes.get("sha256"), str):
        raise PduFormatError("hashes: sha256 missing or not a string")


def _check_signatures(signatures: Any) -> None:
    """``{server_name: {key_id: signature}}``, all strings."""
    if not isinstance(signatures, dict):
        raise PduFormatError("signatures: not an object")
    for server_signatures in signatures.values():
        if not isinstance(server_signatures, dict):
            raise PduFormatError("signatures: entry is not an object")
        for signature in server_signatures.values():
            if not isinstance(signature, str):
                raise PduFormatError("signatures: signature is not a string")


def check_canonical_json_values(obj: Any) -> None:
    """Only values canonical JSON allows (rooms v6+ "Canonical JSON"; appendices).

    No floats, integers within [-(2**53)+1, (2**53)-1], string keys. Raises
    ``PduFormatError``. Iterative so deep nesting cannot exhaust the stack.
    """
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise PduFormatError("non-canonical JSON: object key is not a string")
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str | bool) or value is None:
            continue
        elif isinstance(value, int):
            if not CANONICAL_INT_MIN <= value <= CANONICAL_INT_MAX:
                raise PduFormatError("non-canonical JSON: integer out of range")
        elif isinstance(value, float):
            raise PduFormatError("non-canonical JSON: floats are not allowed")
        else:
            raise PduFormatError(f"non-canonical JSON: unsupported type {type(value).__name__}")


def _check_size(pdu: dict[str, Any], encoded: Callable[[], bytes] | None = None) -> None:
    """At most 65536 bytes as canonical JSON, signatures included (client-server "Size limits")."""
    try:
        size = len(encoded() if encoded is not None else encode_canonical_json(pdu))
    except UnicodeEncodeError:
        raise PduFormatError("invalid unicode (lone surrogate)") from None
    except RecursionError:
        raise PduFormatError("event is nested too deeply") from None
    except ValueError:
        # Infinity or NaN (a v1-v5 event may carry floats, but not these): no
        # canonical form to hash or sign.
        raise PduFormatError("non-canonical JSON: number out of range") from None
    if size > MAX_PDU_BYTES:
        raise PduFormatError(f"event is larger than {MAX_PDU_BYTES} bytes")
