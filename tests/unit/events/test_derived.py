"""A locally built event keeps what it derived (``homeserver.events.derived``) and is
byte-identical to one built step by step; the kept results are trusted only for the
very signature and key that made them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.events.builder import build_event
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.derived import canonical_json, content_hash_ok, verify_signature
from homeserver.events.keys import SigningKey, generate_signing_key
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import (
    SignatureError,
    add_content_hash,
    check_content_hash,
    compute_event_id,
    sign_event,
    verify_event_signature,
)

SERVER = "example.org"


def fields(rv: RoomVersion) -> dict[str, Any]:
    return {
        "room_id": "!room:example.org",
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": "héllo ☃"},
        "prev_events": ["$prev:example.org"] if not rv.event_id_in_pdu else [],
        "auth_events": [],
        "depth": 7,
        "origin_server_ts": 1_700_000_000_000,
    }


def built(rv: RoomVersion, key: SigningKey) -> Event:
    event_id = "$opaque:example.org" if rv.event_id_in_pdu else None
    return build_event(rv, fields(rv), SERVER, key, event_id=event_id)


def as_received(event: Event) -> Event:
    """The event as another server gets it: parsed from the wire, nothing kept."""
    pdu = json.loads(encode_canonical_json(event.pdu))
    return Event(compute_event_id(pdu, event.room_version), pdu, event.room_version)


@pytest.mark.parametrize("version", ["1", "3", "4", "10", "11", "12"])
def test_built_event_is_the_step_by_step_one(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    key = generate_signing_key("k1")
    event = built(rv, key)
    base = dict(fields(rv))
    if rv.event_id_in_pdu:
        base["event_id"] = "$opaque:example.org"
    step_by_step = sign_event(add_content_hash(base), SERVER, key, rv)
    assert encode_canonical_json(event.pdu) == encode_canonical_json(step_by_step)
    assert event.event_id == compute_event_id(step_by_step, rv)


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_built_event_verifies_as_a_remote_server_checks_it(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    key = generate_signing_key("k1")
    event = built(rv, key)
    copy = as_received(event)
    assert copy.derived is None
    assert copy.event_id == event.event_id
    assert check_content_hash(copy.pdu)
    verify_event_signature(copy.pdu, rv, SERVER, key.key_id, key.verify_key)
    # What the checks take from the kept results is what they would compute.
    assert content_hash_ok(event) is True
    assert canonical_json(event) == encode_canonical_json(copy.pdu)
    verify_signature(event, SERVER, key.key_id, key.verify_key)
    verify_signature(copy, SERVER, key.key_id, key.verify_key)


def test_own_signature_is_trusted_only_for_the_key_that_made_it() -> None:
    rv = KNOWN_ROOM_VERSIONS["12"]
    key = generate_signing_key("k1")
    other = generate_signing_key("k1")  # same key id, another key
    event = built(rv, key)
    with pytest.raises(SignatureError):
        verify_signature(event, SERVER, key.key_id, other.verify_key)
    with pytest.raises(SignatureError):
        verify_signature(event, "elsewhere.org", key.key_id, key.verify_key)


def test_a_changed_copy_is_checked_in_full() -> None:
    rv = KNOWN_ROOM_VERSIONS["12"]
    key = generate_signing_key("k1")
    event = built(rv, key)
    pdu = json.loads(encode_canonical_json(event.pdu))
    pdu["content"]["body"] = "changed"
    changed = Event(event.event_id, pdu, rv)
    assert content_hash_ok(changed) is False
    # The signature covers the redacted form (no body): still valid, as the spec says.
    verify_signature(changed, SERVER, key.key_id, key.verify_key)
    pdu2 = json.loads(encode_canonical_json(event.pdu))
    pdu2["sender"] = "@mallory:example.org"
    with pytest.raises(SignatureError):
        verify_signature(Event(event.event_id, pdu2, rv), SERVER, key.key_id, key.verify_key)
    # Our signature swapped for another one: not taken on trust, verified (and fails).
    forged = dict(event.pdu)
    forged["signatures"] = {
        SERVER: {key.key_id: event.pdu["signatures"][SERVER][key.key_id][:-4] + "AAAA"}
    }
    forged_event = Event(event.event_id, forged, rv)
    forged_event.derived = event.derived  # even sharing what the original kept
    with pytest.raises(SignatureError):
        verify_signature(forged_event, SERVER, key.key_id, key.verify_key)
