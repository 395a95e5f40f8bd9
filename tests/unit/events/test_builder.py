"""build_event: hashes, signature and id of new local events, cross-checked independently."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
import signedjson.key
import signedjson.sign

from homeserver.events.builder import build_event
from homeserver.events.canonical import encode_base64, encode_canonical_json
from homeserver.events.keys import SigningKey
from homeserver.events.room_versions import V10, V11, V12
from homeserver.events.signing import (
    check_content_hash,
    compute_event_id,
    room_id_for_create_event,
    verify_event_signature,
)
from homeserver.events.validate import check_pdu_format

from .conftest import KEY_ID, SERVER_NAME, SIGNING_KEY_SEED_B64

EVENT_ID = "$" + "A" * 43


def message_fields(room_id: str = "!room:domain") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@alice:domain",
        "room_id": room_id,
        "content": {"msgtype": "m.text", "body": "hello"},
        "prev_events": [EVENT_ID],
        "auth_events": [EVENT_ID],
        "depth": 12,
        "origin_server_ts": 1700000000000,
    }


def test_v11_message_matches_independent_computation(spec_key: SigningKey) -> None:
    fields = message_fields()
    before = copy.deepcopy(fields)
    event = build_event(V11, fields, SERVER_NAME, spec_key)
    assert fields == before

    # Content hash: sha256 over the canonical JSON of the fields alone.
    content_hash = encode_base64(hashlib.sha256(encode_canonical_json(fields)).digest())
    assert event.pdu["hashes"] == {"sha256": content_hash}
    # Signature: signedjson over the hand-redacted event (v11: message content is emptied).
    redacted = dict(fields, content={}, hashes={"sha256": content_hash})
    their_key = signedjson.key.decode_signing_key_base64("ed25519", "1", SIGNING_KEY_SEED_B64)
    expected_signatures = signedjson.sign.sign_json(copy.deepcopy(redacted), SERVER_NAME, their_key)
    assert event.pdu["signatures"] == expected_signatures["signatures"]
    # Event id: "$" + url-safe sha256 of the redacted, unsigned form.
    reference = hashlib.sha256(encode_canonical_json(redacted)).digest()
    assert event.event_id == "$" + encode_base64(reference, urlsafe=True)

    assert event.pdu == dict(
        fields, hashes={"sha256": content_hash}, signatures=expected_signatures["signatures"]
    )
    assert "origin" not in event.pdu and "unsigned" not in event.pdu
    assert event.room_version is V11
    assert event.room_id == "!room:domain"
    check_pdu_format(event.pdu, V11)
    assert check_content_hash(event.pdu)
    verify_event_signature(event.pdu, V11, SERVER_NAME, KEY_ID, spec_key.verify_key)


def test_v12_create_event_names_the_room(spec_key: SigningKey) -> None:
    create = build_event(
        V12,
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@alice:domain",
            "content": {"room_version": "12", "additional_creators": ["@bob:other"]},
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": 1700000000000,
        },
        SERVER_NAME,
        spec_key,
    )
    assert "room_id" not in create.pdu
    room_id = room_id_for_create_event(create.pdu, V12)
    assert room_id == "!" + create.event_id[1:]
    assert create.room_id == room_id
    assert len(room_id) == 44
    check_pdu_format(create.pdu, V12)
    verify_event_signature(create.pdu, V12, SERVER_NAME, KEY_ID, spec_key.verify_key)

    member = build_event(
        V12,
        dict(
            message_fields(room_id),
            type="m.room.member",
            state_key="@alice:domain",
            content={"membership": "join"},
            prev_events=[create.event_id],
            auth_events=[],
            depth=2,
        ),
        SERVER_NAME,
        spec_key,
    )
    assert member.room_id == room_id
    check_pdu_format(member.pdu, V12)
    assert member.event_id == compute_event_id(member.pdu, V12)


def test_v10_redaction_uses_top_level_redacts(spec_key: SigningKey) -> None:
    fields = dict(message_fields(), type="m.room.redaction", redacts=EVENT_ID, content={})
    event = build_event(V10, fields, SERVER_NAME, spec_key)
    assert event.pdu["redacts"] == EVENT_ID
    assert event.redacts == EVENT_ID
    check_pdu_format(event.pdu, V10)


def test_same_fields_different_versions_different_ids(spec_key: SigningKey) -> None:
    fields = dict(message_fields(), type="m.room.power_levels", state_key="", content={"invite": 0})
    # v11 keeps power_levels "invite" through redaction, v10 does not: the ids differ.
    assert build_event(V10, fields, SERVER_NAME, spec_key).event_id != (
        build_event(V11, fields, SERVER_NAME, spec_key).event_id
    )


@pytest.mark.parametrize(
    ("room_version", "fields", "message"),
    [
        (V11, {k: v for k, v in message_fields().items() if k != "depth"}, "missing event fields"),
        (V11, {k: v for k, v in message_fields().items() if k != "room_id"}, "room_id"),
        (V11, dict(message_fields(), origin="domain"), "unknown event fields: ['origin']"),
        (V11, dict(message_fields(), hashes={}), "unknown event fields: ['hashes']"),
        (V11, dict(message_fields(), redacts=EVENT_ID), "redacts in content"),
        (V12, dict(message_fields(), type="m.room.create"), "has no room_id"),
    ],
)
def test_build_event_refuses_bad_fields(
    spec_key: SigningKey, room_version: Any, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_event(room_version, fields, SERVER_NAME, spec_key)
