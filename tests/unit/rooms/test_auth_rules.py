"""Rules after membership: sender joined, required power level, state keys
naming users, redactions and aliases (v10/v11 rules 5-10, v12 rules 6-11)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.auth import may_apply_redaction

from .authkit import ALICE, BOB, CAROL, MOD, PL, VERSION_IDS, VERSIONS, Room, standard_room

MSG = "m.room.message"
TOPIC = "m.room.topic"


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("membership", "ok"),
    [
        ("join", True),
        (None, False),
        ("invite", False),
        ("leave", False),
        ("ban", False),
        ("knock", False),
    ],
)
def test_sender_must_be_joined(rv: RoomVersion, membership: str | None, ok: bool) -> None:
    room = standard_room(rv, state_default=0)
    if membership is not None:
        room.set_member(CAROL, membership)
    assert room.allowed(room.make(MSG, CAROL, {"body": "hi"})) is ok
    assert room.allowed(room.make(TOPIC, CAROL, {}, "")) is ok


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("event_type", "state_key", "sender", "levels", "ok"),
    [
        (MSG, None, BOB, {}, True),
        (MSG, None, BOB, {"events_default": 10}, False),
        (MSG, None, MOD, {"events_default": 10}, True),
        (MSG, None, BOB, {"events": {MSG: 1}}, False),
        (MSG, None, BOB, {"events_default": 10, "events": {MSG: 0}}, True),
        (TOPIC, "", BOB, {}, False),
        (TOPIC, "", MOD, {}, True),
        (TOPIC, "", MOD, {"state_default": 51}, False),
        (TOPIC, "", BOB, {"events": {TOPIC: 0}}, True),
        (TOPIC, "", MOD, {"events": {TOPIC: 100}}, False),
        ("m.custom.state", "x", BOB, {"state_default": 0}, True),
        ("m.custom.state", "x", BOB, {"state_default": 0, "events_default": 100}, True),
        ("m.room.encrypted", None, BOB, {"state_default": 100}, True),
        ("m.room.redaction", None, BOB, {}, True),
        ("m.room.redaction", None, BOB, {"redact": 100}, True),
        ("m.room.redaction", None, BOB, {"events": {"m.room.redaction": 50}}, False),
        ("m.room.redaction", None, MOD, {"events": {"m.room.redaction": 50}}, True),
        ("m.room.aliases", "a.example", BOB, {}, False),
        ("m.room.aliases", "a.example", MOD, {}, True),
        ("m.room.aliases", "b.example", MOD, {}, True),
    ],
)
def test_required_power_level(
    rv: RoomVersion,
    event_type: str,
    state_key: str | None,
    sender: str,
    levels: dict[str, Any],
    ok: bool,
) -> None:
    room = standard_room(rv, **levels)
    assert room.allowed(room.make(event_type, sender, {}, state_key)) is ok


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("state_key", "sender", "ok"),
    [
        (BOB, BOB, True),
        (MOD, BOB, False),
        ("@anything", BOB, False),
        ("@bob:b.example_suffix", BOB, False),
        ("bob", BOB, True),
        ("", BOB, True),
        (BOB, ALICE, False),
    ],
)
def test_state_key_naming_a_user(rv: RoomVersion, state_key: str, sender: str, ok: bool) -> None:
    room = standard_room(rv, state_default=0)
    assert room.allowed(room.make("m.custom", sender, {}, state_key)) is ok


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_no_power_levels_creator_has_100(rv: RoomVersion) -> None:
    room = Room(rv)
    room.set_member(ALICE, "join")
    room.set_member(BOB, "join")
    assert room.allowed(room.make(TOPIC, ALICE, {}, ""))
    assert not room.allowed(room.make(TOPIC, BOB, {}, ""))  # state_default 50
    assert room.allowed(room.make(MSG, BOB, {}))
    assert room.allowed(room.member(ALICE, BOB, "ban"))
    assert not room.allowed(room.member(BOB, ALICE, "ban"))


def test_v12_no_power_levels_creators_are_infinite() -> None:
    room = Room(V12, content={"additional_creators": [CAROL]})
    for user in (ALICE, BOB, CAROL):
        room.set_member(user, "join")
    assert room.allowed(room.make(TOPIC, ALICE, {}, ""))
    assert room.allowed(room.make(TOPIC, CAROL, {}, ""))
    assert not room.allowed(room.make(TOPIC, BOB, {}, ""))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_redaction_application_is_power_or_same_server(rv: RoomVersion) -> None:
    room = standard_room(rv)
    pl = room.state[(PL, "")]
    original = room.make(MSG, BOB, {"body": "x"})
    own = room.make("m.room.redaction", BOB, {"redacts": original.event_id})
    by_mod = room.make("m.room.redaction", MOD, {"redacts": original.event_id})
    by_peer = room.make("m.room.redaction", "@eve:c.example", {"redacts": original.event_id})
    by_server_mate = room.make("m.room.redaction", "@bob2:b.example", {})
    assert may_apply_redaction(own, original, pl, room.create)
    assert may_apply_redaction(by_mod, original, pl, room.create)
    assert may_apply_redaction(by_server_mate, original, pl, room.create)
    assert not may_apply_redaction(by_peer, original, pl, room.create)
    # The redact level is read from the power levels.
    strict = room.put(PL, ALICE, {**pl.content, "redact": 51})
    assert not may_apply_redaction(by_mod, original, strict, room.create)


def test_v12_creator_may_apply_any_redaction() -> None:
    room = standard_room(V12, redact=2**53 - 1)
    original = room.make(MSG, BOB, {})
    redaction = room.make("m.room.redaction", ALICE, {"redacts": original.event_id})
    assert may_apply_redaction(redaction, original, room.state[(PL, "")], room.create)


@pytest.mark.parametrize("rv", [V11, V12], ids=["11", "12"])
def test_redaction_with_redacts_in_content_follows_default_rules(rv: RoomVersion) -> None:
    room = standard_room(rv)
    redaction = room.make("m.room.redaction", BOB, {"redacts": "$ALICEs"})
    assert room.allowed(redaction)
    assert not room.allowed(room.make("m.room.redaction", CAROL, {"redacts": "$x"}))
