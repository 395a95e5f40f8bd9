"""Room creators: the creator's first join (v10/v11 rule 4.3.1, v12 rule
5.3.1) and creators' power over members (v12: infinitely high)."""

from __future__ import annotations

import pytest

from homeserver.events.room_versions import V10, V11, V12, RoomVersion

from .authkit import ALICE, BOB, CAROL, JR, VERSION_IDS, VERSIONS, Room, standard_room


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_creator_first_join_after_create(rv: RoomVersion) -> None:
    room = Room(rv)
    first = room.member(ALICE, ALICE, "join")
    first.pdu["prev_events"] = [room.create.event_id]
    assert room.allowed(first)
    # Anyone else's join right after the create has no join rule to pass.
    other = room.member(BOB, BOB, "join")
    other.pdu["prev_events"] = [room.create.event_id]
    assert not room.allowed(other)
    # The creator's join after anything else needs the join rules.
    later = room.member(ALICE, ALICE, "join")
    assert not room.allowed(later)
    two = room.member(ALICE, ALICE, "join")
    two.pdu["prev_events"] = [room.create.event_id, "$other"]
    assert not room.allowed(two)


def test_v10_first_join_uses_content_creator() -> None:
    room = Room(V10, creator=ALICE)
    room.create.pdu["content"]["creator"] = BOB  # sender ALICE, creator BOB
    bob = room.member(BOB, BOB, "join")
    bob.pdu["prev_events"] = [room.create.event_id]
    assert room.allowed(bob)
    alice = room.member(ALICE, ALICE, "join")
    alice.pdu["prev_events"] = [room.create.event_id]
    assert not room.allowed(alice)


@pytest.mark.parametrize("rv", [V11, V12], ids=["11", "12"])
def test_v11_plus_first_join_uses_create_sender(rv: RoomVersion) -> None:
    room = Room(rv, creator=ALICE)
    room.create.pdu["content"]["creator"] = BOB  # ignored from v11
    bob = room.member(BOB, BOB, "join")
    bob.pdu["prev_events"] = [room.create.event_id]
    assert not room.allowed(bob)


def test_v12_additional_creator_is_not_the_first_joiner() -> None:
    room = Room(V12, content={"additional_creators": [BOB]})
    bob = room.member(BOB, BOB, "join")
    bob.pdu["prev_events"] = [room.create.event_id]
    assert not room.allowed(bob)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_creator_power_over_members(rv: RoomVersion) -> None:
    room = standard_room(rv, users={BOB: 99})
    assert room.allowed(room.member(ALICE, BOB, "ban"))
    assert room.allowed(room.member(ALICE, BOB, "leave"))
    assert not room.allowed(room.member(BOB, ALICE, "ban"))
    assert not room.allowed(room.member(BOB, ALICE, "leave"))


def test_v12_creators_outrank_any_level() -> None:
    room = standard_room(V12, users={BOB: 2**53 - 1})
    assert room.allowed(room.member(ALICE, BOB, "ban"))
    assert room.allowed(room.member(ALICE, BOB, "leave"))
    assert not room.allowed(room.member(BOB, ALICE, "ban"))
    assert not room.allowed(room.member(BOB, ALICE, "leave"))


def test_v12_additional_creators_have_infinite_power() -> None:
    room = Room(V12, content={"additional_creators": [CAROL]})
    room.set_member(ALICE, "join")
    room.put("m.room.power_levels", ALICE, {"users": {BOB: 1000}})
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    assert room.allowed(room.member(CAROL, BOB, "ban"))
    assert not room.allowed(room.member(BOB, CAROL, "leave"))
    # Creators are equal: neither can kick the other.
    assert not room.allowed(room.member(CAROL, ALICE, "leave"))
    assert not room.allowed(room.member(ALICE, CAROL, "ban"))


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_additional_creators_have_no_power_before_v12(rv: RoomVersion) -> None:
    room = Room(rv, content={"additional_creators": [CAROL]})
    room.set_member(ALICE, "join")
    room.put(JR, ALICE, {"join_rule": "public"})
    room.set_member(BOB, "join")
    room.set_member(CAROL, "join")
    assert not room.allowed(room.member(CAROL, BOB, "ban"))
    assert room.allowed(room.member(ALICE, BOB, "ban"))
