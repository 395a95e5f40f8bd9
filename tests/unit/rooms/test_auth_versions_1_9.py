"""The authorisation rules where room versions 1-9 differ from 10+ (rooms/fragments
v1-auth-rules, v3-auth-rules, v8-auth-rules, rooms/v6, v7, v10)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    RoomVersion,
)
from homeserver.rooms.auth import user_power_level
from tests.unit.rooms.authkit import (
    ALICE,
    BOB,
    CAROL,
    MEMBER,
    MOD,
    PL,
    Room,
    pl_content,
    standard_room,
    yes,
)

BEFORE_6 = [KNOWN_ROOM_VERSIONS[str(n)] for n in range(1, 6)]
FROM_6 = [KNOWN_ROOM_VERSIONS[str(n)] for n in range(6, 13)]


def _by_version(versions: list[RoomVersion]) -> Any:
    return pytest.mark.parametrize("rv", versions, ids=lambda v: v.identifier)


# --- m.room.aliases (v1-v5 rule 4) -----------------------------------------------------


@_by_version(BEFORE_6)
def test_aliases_rule_before_v6(rv: RoomVersion) -> None:
    room = standard_room(rv)
    # CAROL is not in the room: rule 4 comes before the membership rule.
    assert room.allowed(room.make("m.room.aliases", CAROL, {"aliases": []}, "c.example"))
    assert not room.allowed(room.make("m.room.aliases", CAROL, {"aliases": []}, "a.example"))
    assert not room.allowed(room.make("m.room.aliases", CAROL, {"aliases": []}))


@_by_version(FROM_6)
def test_aliases_are_ordinary_state_from_v6(rv: RoomVersion) -> None:
    room = standard_room(rv)
    assert not room.allowed(room.make("m.room.aliases", CAROL, {"aliases": []}, "c.example"))
    # A joined member with the state level may send it under any state key.
    assert room.allowed(room.make("m.room.aliases", MOD, {"aliases": []}, "b.example"))
    assert not room.allowed(room.make("m.room.aliases", BOB, {"aliases": []}, "b.example"))


# --- m.room.redaction (v1-v2 rule 11) -----------------------------------------------------


def _redaction(rv: RoomVersion, room: Room, sender: str, event_id: str, redacts: str) -> Event:
    event = room.make("m.room.redaction", sender, {})
    event.pdu["redacts"] = redacts
    return Event(event_id, event.pdu, rv)


@_by_version([V1, V2])
def test_redaction_rule_in_v1_v2(rv: RoomVersion) -> None:
    room = standard_room(rv)
    # BOB (0) is below the redact level (50): only redactions of events whose
    # id names the redaction's own id server pass.
    assert room.allowed(_redaction(rv, room, BOB, "$r:b.example", "$x:b.example"))
    assert not room.allowed(_redaction(rv, room, BOB, "$r:b.example", "$x:a.example"))
    assert room.allowed(_redaction(rv, room, MOD, "$r:a.example", "$x:b.example"))


@_by_version([V3, V6, V10])
def test_redactions_are_ordinary_events_from_v3(rv: RoomVersion) -> None:
    room = standard_room(rv)
    assert room.allowed(_redaction(rv, room, BOB, "$" + "r" * 43, "$" + "x" * 43))


# --- knocking (v7) ---------------------------------------------------------------------


@pytest.mark.parametrize(("rv", "allowed"), [(V6, False), (V7, True), (V10, True)])
def test_knocking_from_v7(rv: RoomVersion, allowed: bool) -> None:
    room = standard_room(rv, "knock")
    assert room.allowed(room.member(CAROL, CAROL, "knock")) is allowed
    room.set_member(CAROL, "knock")
    # Retracting a knock is a leave from "knock".
    assert room.allowed(room.member(CAROL, CAROL, "leave")) is allowed


@pytest.mark.parametrize(("rv", "allowed"), [(V6, False), (V7, True)])
def test_invited_user_joins_a_knock_room_from_v7(rv: RoomVersion, allowed: bool) -> None:
    room = standard_room(rv, "knock")
    room.set_member(CAROL, "invite", ALICE)
    assert room.allowed(room.member(CAROL, CAROL, "join")) is allowed


# --- restricted joins (v8) -----------------------------------------------------------------


@pytest.mark.parametrize(("rv", "allowed"), [(V7, False), (V8, True), (V9, True)])
def test_restricted_join_from_v8(rv: RoomVersion, allowed: bool) -> None:
    room = standard_room(rv, "restricted")
    join = room.member(CAROL, CAROL, "join", join_authorised_via_users_server=MOD)
    assert room.allowed(join, verify_server_signature=yes) is allowed


@pytest.mark.parametrize(("rv", "allowed"), [(V7, True), (V8, False)])
def test_authorising_user_key_means_nothing_before_v8(rv: RoomVersion, allowed: bool) -> None:
    """v8 rule 4.2: the authorising server must have signed; before v8 the key is plain content."""
    room = standard_room(rv, "public")
    join = room.member(CAROL, CAROL, "join", join_authorised_via_users_server=MOD)
    assert room.allowed(join) is allowed  # no signature verifier given


# --- power levels -------------------------------------------------------------------------


@_by_version(BEFORE_6)
def test_float_power_levels_before_v6(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event = room.make(PL, ALICE, pl_content(rv, {BOB: 50.57}))  # type: ignore[dict-item]
    assert room.allowed(event)
    assert user_power_level(BOB, event, room.create) == 50


@_by_version(FROM_6)
def test_float_power_levels_refused_from_v6(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event = room.make(PL, MOD if rv.privileged_creators else ALICE, {"users": {BOB: 50.5}})
    assert not room.allowed(event)


@pytest.mark.parametrize(("rv", "allowed"), [(V1, True), (V9, True), (V10, False)])
def test_only_users_is_shape_checked_before_v10(rv: RoomVersion, allowed: bool) -> None:
    room = standard_room(rv)
    assert room.allowed(room.make(PL, ALICE, pl_content(rv, ban="x"))) is allowed
    # String levels are integers before v10.
    assert room.allowed(room.make(PL, ALICE, pl_content(rv, {BOB: "10"}))) is allowed  # type: ignore[dict-item]
    assert not room.allowed(room.make(PL, ALICE, {"users": {"not-a-user": 1}}))


@pytest.mark.parametrize(("rv", "allowed"), [(V5, True), (V6, False), (V9, False)])
def test_notifications_levels_are_guarded_from_v6(rv: RoomVersion, allowed: bool) -> None:
    room = standard_room(rv)
    raised = pl_content(rv, notifications={"room": 100})
    assert room.allowed(room.make(PL, MOD, raised)) is allowed


# --- create and the creator's first join -------------------------------------------------------


@_by_version([V1, V2, V5, V9, V10])
def test_create_needs_a_creator_before_v11(rv: RoomVersion) -> None:
    room = Room(rv)
    pdu = dict(room.create.pdu, content={"room_version": rv.identifier})
    assert not room.allowed(Event("$c:a.example", pdu, rv))
    assert room.allowed(room.create)


@_by_version([V1, V2])
def test_creators_first_join_cites_the_create_event_as_a_pair(rv: RoomVersion) -> None:
    room = Room(rv)
    join = room.make(MEMBER, ALICE, {"membership": "join"}, ALICE)
    join.pdu["prev_events"] = [[room.create.event_id, {"sha256": "abc"}]]
    assert room.allowed(join)
    someone = room.make(MEMBER, BOB, {"membership": "join"}, BOB)
    someone.pdu["prev_events"] = [[room.create.event_id, {"sha256": "abc"}]]
    assert not room.allowed(someone)  # not the creator, and no join rules: invite only


def test_join_rules_unknown_to_a_version_refuse_joins() -> None:
    for rv, rule in ((V6, "knock"), (V7, "restricted"), (V9, "knock_restricted")):
        room = standard_room(rv, rule)
        room.set_member(CAROL, "invite", ALICE)
        join = room.member(CAROL, CAROL, "join")
        # Invited users join knock/restricted rooms only where the rule exists.
        assert room.allowed(join) is (rule == "restricted" and rv.restricted_join), rv


@_by_version(BEFORE_6)
def test_infinite_float_levels_reject_the_event(rv: RoomVersion) -> None:
    """v1-floaty-power-levels: values beyond binary64 (1e400 parses as infinity) reject."""
    room = standard_room(rv)
    assert not room.allowed(room.make(PL, ALICE, pl_content(rv, ban=float("inf"))))
    assert not room.allowed(room.make(PL, ALICE, pl_content(rv, events={"x": float("nan")})))
    assert room.allowed(room.make(PL, ALICE, pl_content(rv, ban=50.57)))
