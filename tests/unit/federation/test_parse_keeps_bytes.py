"""``parse_pdu`` keeps the byte forms it worked out (``homeserver.events.derived``): what
the signatures and the event id cover, and, for a PDU without ``unsigned``, the canonical
JSON to store; each equal to a recomputation from the stored event."""

from __future__ import annotations

import json
from typing import Any

from federation.pdu.parse import parse_pdu
from homeserver.events.builder import build_event
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.derived import canonical_json, verify_signature
from homeserver.events.keys import generate_signing_key
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import event_signable_bytes

RV = KNOWN_ROOM_VERSIONS["10"]
KEY = generate_signing_key("k")


def wire_pdu(body: str) -> dict[str, Any]:
    event = build_event(
        RV,
        {
            "room_id": "!r:remote.example",
            "type": "m.room.message",
            "sender": "@bob:remote.example",
            "content": {"msgtype": "m.text", "body": body},
            "prev_events": [],
            "auth_events": [],
            "depth": 3,
            "origin_server_ts": 1_700_000_000_000,
        },
        "remote.example",
        KEY,
    )
    return dict(json.loads(encode_canonical_json(event.pdu)))


def test_kept_bytes_are_the_recomputed_ones() -> None:
    event, redacted = parse_pdu(wire_pdu("hi"), RV)
    assert not redacted
    assert event.derived is not None and event.derived.signed_by_us is None
    assert event.derived.signable == event_signable_bytes(event.pdu, RV)
    assert event.derived.canonical == encode_canonical_json(event.pdu)
    verify_signature(event, "remote.example", KEY.key_id, KEY.verify_key)


def test_unsigned_is_not_in_the_kept_encoding() -> None:
    pdu = wire_pdu("hi")
    pdu["unsigned"] = {"age": 5}
    event, _ = parse_pdu(pdu, RV)
    assert "unsigned" not in event.pdu
    assert canonical_json(event) == encode_canonical_json(event.pdu)


def test_redacted_copy_keeps_what_the_signature_covers() -> None:
    pdu = wire_pdu("hi")
    pdu["content"]["body"] = "changed in transit"
    event, redacted = parse_pdu(pdu, RV)
    assert redacted
    assert "body" not in event.content
    assert event.derived is not None
    assert event.derived.signable == event_signable_bytes(event.pdu, RV)
    assert canonical_json(event) == encode_canonical_json(event.pdu)
    verify_signature(event, "remote.example", KEY.key_id, KEY.verify_key)
