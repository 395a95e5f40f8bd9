"""Steps 1 and 3 of "Checks performed on receipt of a PDU": a valid event of the
room's version, and its content hash (a mismatch keeps the redacted form).

Pure: plain JSON in, ``Event`` out.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.derived import keep
from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import (
    check_content_hash,
    event_id_from_signable,
    event_signable_bytes,
)
from homeserver.events.validate import PduFormatError, check_pdu_format


class PduDropped(Exception):
    """The PDU is not a valid event, or fails its signature checks: it is dropped."""

    def __init__(self, reason: str, *, bad_signature: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # Well-formed, but not signed as it must be (a refusal, not a malformed request).
        self.bad_signature = bad_signature


def room_id_of(pdu: Any) -> str:
    """The room a PDU claims to belong to (step 1 needs it to find the room version)."""
    room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
    if not isinstance(room_id, str):
        raise PduDropped("PDU has no room_id")
    return room_id


def parse_pdu(pdu: Any, room_version: RoomVersion) -> tuple[Event, bool]:
    """The event (``unsigned`` dropped, as remote ``unsigned`` is not trusted) and
    whether its content hash failed, in which case the event is its redacted form."""
    if not isinstance(pdu, dict):
        raise PduDropped("PDU is not a JSON object")
    for key in ("hashes", "signatures"):
        if key not in pdu:
            # Well-formed otherwise or not, nobody signed it: a refusal (403 in the
            # membership handshakes), as for a signature that does not verify.
            raise PduDropped(f"PDU has no {key}: it is not signed", bad_signature=True)
    encoded: list[bytes] = []

    def encode() -> bytes:
        encoded.append(encode_canonical_json(pdu))
        return encoded[0]

    try:
        check_pdu_format(pdu, room_version, encoded=encode)
    except PduFormatError as e:
        raise PduDropped(e.reason) from None
    clean = {k: v for k, v in pdu.items() if k != "unsigned"}
    # What the signatures and the event id cover (one encoding for both: ``derived``).
    signable = event_signable_bytes(clean, room_version)
    event_id = event_id_from_signable(clean, signable, room_version)
    if check_content_hash(clean):
        event = Event(event_id, clean, room_version)
        # Without ``unsigned`` the checked PDU's encoding is the one to store.
        whole = encoded[0] if encoded and "unsigned" not in pdu else None
        keep(event, canonical=whole, signable=signable, content_hash_ok=True)
        return event, False
    redacted = Event(event_id, redact(clean, room_version), room_version)
    keep(redacted, signable=signable)  # redacting again changes nothing it covers
    return redacted, True


# Fields whose values a room's events repeat (``share_repeats``).
_REPEATED = ("type", "room_id", "sender", "state_key")


def share_repeats(pdu: dict[str, Any], memo: dict[str, str]) -> None:
    """Make the strings that a room's events repeat (type, room id, sender and state
    key, the auth and prev events they cite, a membership) one object each across the
    PDUs given the same ``memo``; equal values, so nothing signed or hashed changes.
    A big room's state is thousands of events kept in memory while it is stored and
    after (the events cache), and parsing gave each its own copies: a fifth of them."""
    for key in _REPEATED:
        value = pdu.get(key)
        if isinstance(value, str):
            pdu[key] = memo.setdefault(value, value)
    for key in ("auth_events", "prev_events"):
        refs = pdu.get(key)
        if isinstance(refs, list):
            pdu[key] = [memo.setdefault(r, r) if isinstance(r, str) else r for r in refs]
    content = pdu.get("content")
    membership = content.get("membership") if isinstance(content, dict) else None
    if isinstance(content, dict) and isinstance(membership, str):
        content["membership"] = memo.setdefault(membership, membership)
