"""Redaction keep-lists per room version (rooms v10 "Redactions" vs v11/v12)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.events.redaction import redact
from homeserver.events.room_versions import V10, V11, V12, RoomVersion

SIGNED_INVITE = {"mxid": "@b:hs", "token": "tok", "signatures": {"id.hs": {"ed25519:0": "sig"}}}

# (type, full content, content kept by v10, content kept by v11 and v12)
CONTENT_TABLE: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "m.room.member",
        {
            "membership": "join",
            "join_authorised_via_users_server": "@admin:hs",
            "displayname": "Bob",
            "avatar_url": "mxc://hs/abc",
            "third_party_invite": {"display_name": "b...@example.org", "signed": SIGNED_INVITE},
        },
        {"membership": "join", "join_authorised_via_users_server": "@admin:hs"},
        {
            "membership": "join",
            "join_authorised_via_users_server": "@admin:hs",
            "third_party_invite": {"signed": SIGNED_INVITE},
        },
    ),
    (
        "m.room.member",
        {"membership": "invite", "third_party_invite": {"display_name": "no signed block"}},
        {"membership": "invite"},
        {"membership": "invite", "third_party_invite": {}},
    ),
    (
        "m.room.member",
        {"membership": "invite", "third_party_invite": "not an object"},
        {"membership": "invite"},
        {"membership": "invite"},
    ),
    (
        "m.room.create",
        {
            "creator": "@a:hs",
            "room_version": "11",
            "m.federate": False,
            "predecessor": {"room_id": "!old:hs", "event_id": "$e"},
            "additional_creators": ["@b:hs"],
            "type": "m.space",
        },
        {"creator": "@a:hs"},
        {
            "creator": "@a:hs",
            "room_version": "11",
            "m.federate": False,
            "predecessor": {"room_id": "!old:hs", "event_id": "$e"},
            "additional_creators": ["@b:hs"],
            "type": "m.space",
        },
    ),
    (
        "m.room.join_rules",
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "extra": 1},
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
    ),
    (
        "m.room.power_levels",
        {
            "ban": 50,
            "events": {"m.room.name": 50},
            "events_default": 0,
            "invite": 50,
            "kick": 50,
            "notifications": {"room": 50},
            "redact": 50,
            "state_default": 50,
            "users": {"@a:hs": 100},
            "users_default": 0,
        },
        {
            "ban": 50,
            "events": {"m.room.name": 50},
            "events_default": 0,
            "kick": 50,
            "redact": 50,
            "state_default": 50,
            "users": {"@a:hs": 100},
            "users_default": 0,
        },
        {
            "ban": 50,
            "events": {"m.room.name": 50},
            "events_default": 0,
            "invite": 50,
            "kick": 50,
            "redact": 50,
            "state_default": 50,
            "users": {"@a:hs": 100},
            "users_default": 0,
        },
    ),
    (
        "m.room.history_visibility",
        {"history_visibility": "shared", "extra": True},
        {"history_visibility": "shared"},
        {"history_visibility": "shared"},
    ),
    (
        "m.room.redaction",
        {"redacts": "$target", "reason": "spam"},
        {},
        {"redacts": "$target"},
    ),
    ("m.room.message", {"msgtype": "m.text", "body": "secret"}, {}, {}),
    ("m.room.topic", {"topic": "t"}, {}, {}),
    ("m.room.name", {"name": "n"}, {}, {}),
    ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."}, {}, {}),
]


def full_event(event_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": "$ev",
        "type": event_type,
        "room_id": "!r:hs",
        "sender": "@a:hs",
        "state_key": "",
        "content": content,
        "hashes": {"sha256": "h"},
        "signatures": {"hs": {"ed25519:1": "s"}},
        "depth": 5,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "hs",
        "origin_server_ts": 1234,
        "membership": "join",
        "redacts": "$target",
        "unsigned": {"age": 1},
        "custom": "dropped",
    }


TOP_LEVEL_V11 = {
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
}
TOP_LEVEL_V10 = TOP_LEVEL_V11 | {"origin", "membership", "prev_state"}


@pytest.mark.parametrize(("event_type", "content", "v10", "v11"), CONTENT_TABLE)
def test_content_keep_lists(
    event_type: str, content: dict[str, Any], v10: dict[str, Any], v11: dict[str, Any]
) -> None:
    event = full_event(event_type, content)
    before = copy.deepcopy(event)
    assert redact(event, V10)["content"] == v10
    assert redact(event, V11)["content"] == v11
    assert redact(event, V12)["content"] == v11
    assert event == before


@pytest.mark.parametrize(
    ("room_version", "kept"), [(V10, TOP_LEVEL_V10), (V11, TOP_LEVEL_V11), (V12, TOP_LEVEL_V11)]
)
def test_top_level_keep_lists(room_version: RoomVersion, kept: set[str]) -> None:
    event = full_event("m.room.message", {"body": "x"})
    redacted = redact(event, room_version)
    assert set(redacted) == kept
    assert {k: v for k, v in redacted.items() if k != "content"} == {
        k: v for k, v in event.items() if k in kept and k != "content"
    }


def test_v10_drops_top_level_redacts_v11_keeps_content_redacts() -> None:
    # v10: "redacts" is a top-level key and not protected.
    v10_event = full_event("m.room.redaction", {"reason": "r"})
    assert "redacts" not in redact(v10_event, V10)
    # v11: it moved into content, where it is protected.
    v11_event = full_event("m.room.redaction", {"redacts": "$t", "reason": "r"})
    del v11_event["redacts"]
    redacted = redact(v11_event, V11)
    assert redacted["content"] == {"redacts": "$t"}
    assert "redacts" not in redacted


def test_missing_or_bad_content_becomes_empty_object() -> None:
    event = full_event("m.room.member", {})
    del event["content"]
    assert redact(event, V11)["content"] == {}
    assert redact(dict(event, content=["x"]), V10)["content"] == {}


def test_redaction_is_idempotent() -> None:
    for event_type, content, _, _ in CONTENT_TABLE:
        for room_version in (V10, V11, V12):
            once = redact(full_event(event_type, content), room_version)
            assert redact(once, room_version) == once


def test_v12_create_keeps_additional_creators_without_room_id() -> None:
    event = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@a:hs",
        "content": {"room_version": "12", "additional_creators": ["@b:hs", "@c:other"]},
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1,
        "hashes": {"sha256": "h"},
        "signatures": {},
    }
    redacted = redact(event, V12)
    assert redacted == event
    assert redacted is not event
    assert redacted["content"] is not event["content"]
