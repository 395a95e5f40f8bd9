"""Power level helpers and m.room.power_levels changes (v10/v11 rule 9, v12 rule 10).

standard_room: ALICE 100 (v10/v11; a creator in v12), MOD 50, BOB 0; the
power levels event itself needs state_default (50).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.auth import CREATOR_POWER, user_power_level
from homeserver.rooms.auth.power_levels import (
    as_level,
    ban_level,
    invite_level,
    kick_level,
    notification_level,
    redact_level,
    required_power_level,
)

from .authkit import (
    ALICE,
    BOB,
    CAROL,
    MOD,
    PL,
    VERSION_IDS,
    VERSIONS,
    Room,
    pl_content,
    standard_room,
)

LEVEL_KEYS = ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]


# -- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_levels_default_without_power_levels(rv: RoomVersion) -> None:
    assert (invite_level(None), kick_level(None), ban_level(None), redact_level(None)) == (
        0,
        50,
        50,
        50,
    )
    assert notification_level(None) == 50
    assert required_power_level("m.room.message", False, None) == 0
    assert required_power_level("m.room.topic", True, None) == 50


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_levels_read_from_power_levels(rv: RoomVersion) -> None:
    room = standard_room(
        rv,
        invite=1,
        kick=2,
        ban=3,
        redact=4,
        events_default=5,
        state_default=6,
        events={"m.room.topic": 7, "m.custom": 8},
        notifications={"room": 9, "x": 10},
        users_default=11,
    )
    pl = room.state[(PL, "")]
    assert (invite_level(pl), kick_level(pl), ban_level(pl), redact_level(pl)) == (1, 2, 3, 4)
    assert required_power_level("m.room.message", False, pl) == 5
    assert required_power_level("m.room.name", True, pl) == 6
    assert required_power_level("m.room.topic", True, pl) == 7
    assert required_power_level("m.custom", False, pl) == 8
    assert notification_level(pl) == 9
    assert notification_level(pl, "x") == 10
    assert notification_level(pl, "unknown") == 50
    assert user_power_level(MOD, pl, room.create) == 50
    assert user_power_level(CAROL, pl, room.create) == 11


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_creator_level_before_v12(rv: RoomVersion) -> None:
    room = Room(rv)
    assert user_power_level(ALICE, None, room.create) == 100
    assert user_power_level(BOB, None, room.create) == 0
    pl = room.put(PL, ALICE, {"users": {ALICE: 30}})
    assert user_power_level(ALICE, pl, room.create) == 30


def test_v12_creators_are_infinite() -> None:
    room = Room(V12, content={"additional_creators": [BOB]})
    pl = room.put(PL, ALICE, {"users_default": 10})
    for state in (None, pl):
        assert user_power_level(ALICE, state, room.create) == CREATOR_POWER
        assert user_power_level(BOB, state, room.create) == CREATOR_POWER
        assert user_power_level(BOB, state, room.create) > 2**1000
    assert user_power_level(CAROL, None, room.create) == 0
    assert user_power_level(CAROL, pl, room.create) == 10


def test_as_level_is_strict_from_v10() -> None:
    for rv in VERSIONS:
        assert as_level(5, rv) == 5
        assert as_level(-5, rv) == -5
        for bad in ("5", 5.0, True, None, [5], {"a": 1}):
            assert as_level(bad, rv) is None
    stringy = dataclasses.replace(V10, identifier="9", strict_integer_power_levels=False)
    assert as_level(" +50 ", stringy) == 50
    assert as_level("-3", stringy) == -3
    assert as_level("5.5", stringy) is None
    assert as_level(True, stringy) is None


# -- rule 9 [10]: content checks ----------------------------------------------------------


def change(room: Room, sender: str, content: dict[str, Any]) -> bool:
    return room.allowed(room.make(PL, sender, content, ""))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("key", LEVEL_KEYS)
@pytest.mark.parametrize("value", ["50", 50.5, True, None, [50]])
def test_non_integer_levels_are_refused(rv: RoomVersion, key: str, value: object) -> None:
    room = standard_room(rv)
    content = dict(room.state[(PL, "")].content)
    assert change(room, ALICE, content)
    content[key] = value
    assert not change(room, ALICE, content)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    "extra",
    [
        {"events": {"m.room.topic": "50"}},
        {"events": {"m.room.topic": True}},
        {"events": []},
        {"notifications": {"room": "50"}},
        {"notifications": 50},
        {"users": {"@bob:b.example": "50"}},
        {"users": {"bob": 50}},
        {"users": {"@bob": 50}},
        {"users": []},
    ],
    ids=lambda e: repr(e),
)
def test_malformed_tables_are_refused(rv: RoomVersion, extra: dict[str, Any]) -> None:
    room = standard_room(rv)
    content = {**room.state[(PL, "")].content, **extra}
    if "users" in extra and isinstance(extra["users"], dict):
        content["users"] = {**pl_content(rv)["users"], **extra["users"]}
    assert not change(room, ALICE, content)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_first_power_levels_event_is_allowed(rv: RoomVersion) -> None:
    room = Room(rv)
    room.set_member(ALICE, "join")
    assert change(room, ALICE, pl_content(rv, {BOB: 100}, ban=1000, events={"x": 10**6}))
    room.set_member(BOB, "join")
    assert not change(room, BOB, pl_content(rv))  # state_default 50 with no power levels


def test_v12_creators_may_not_be_listed() -> None:
    room = Room(V12, content={"additional_creators": [BOB]})
    room.set_member(ALICE, "join")
    assert change(room, ALICE, {"users": {MOD: 50}})
    assert not change(room, ALICE, {"users": {ALICE: 100}})
    assert not change(room, ALICE, {"users": {BOB: 100}})
    room.put(PL, ALICE, {"users": {MOD: 50}})
    assert not change(room, ALICE, {"users": {MOD: 50, BOB: 2**53 - 1}})


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_creator_may_be_listed_before_v12(rv: RoomVersion) -> None:
    room = Room(rv, content={"additional_creators": [BOB]})
    room.set_member(ALICE, "join")
    assert change(room, ALICE, {"users": {ALICE: 100, BOB: 100}})


# -- rule 9 [10]: changes against the current event --------------------------------------


def _mod_changes(rv: RoomVersion, base: dict[str, Any], new: dict[str, Any]) -> bool:
    room = standard_room(rv, **base)
    current = room.state[(PL, "")].content
    return change(room, MOD, {**current, **new})


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("base", "new", "ok"),
    [
        ({}, {}, True),
        ({}, {"kick": 40}, True),
        ({}, {"kick": 50}, True),
        ({}, {"kick": 51}, False),
        ({"ban": 60}, {"ban": 40}, False),
        ({"ban": 60}, {"ban": 60}, True),
        ({"ban": 60}, {"kick": 20}, True),
        ({"redact": 30}, {"redact": 50}, True),
        ({"invite": 50}, {"invite": 0}, True),
        ({"state_default": 40}, {"state_default": 60}, False),
        ({}, {"users_default": 50}, True),
        ({}, {"users_default": 51}, False),
        ({}, {"events_default": 51}, False),
        ({}, {"events": {"m.custom": 50}}, True),
        ({}, {"events": {"m.custom": 51}}, False),
        ({"events": {"m.custom": 100}}, {"events": {}}, False),
        ({"events": {"m.custom": 100}}, {"events": {"m.custom": 10}}, False),
        ({"events": {"m.custom": 100, "m.a": 1}}, {"events": {"m.custom": 100}}, True),
        ({"events": {"m.custom": 100, "m.a": 1}}, {"events": {"m.custom": 100, "m.a": 2}}, True),
        ({"events": {"m.custom": 40}}, {"events": {"m.custom": 50}}, True),
        ({}, {"notifications": {"room": 50}}, True),
        ({}, {"notifications": {"room": 51}}, False),
        ({"notifications": {"room": 80}}, {"notifications": {"room": 20}}, False),
        ({"notifications": {"room": 20}}, {"notifications": {}}, True),
    ],
)
def test_level_changes(
    rv: RoomVersion, base: dict[str, Any], new: dict[str, Any], ok: bool
) -> None:
    assert _mod_changes(rv, base, new) is ok


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_removing_a_level_above_the_sender_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv, ban=80)
    content = dict(room.state[(PL, "")].content)
    del content["ban"]
    assert not change(room, MOD, content)
    assert change(room, ALICE, content)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("base", "new", "ok"),
    [
        ({BOB: 0}, {BOB: 50}, True),  # raise another user to one's own level
        ({BOB: 0}, {BOB: 51}, False),  # but not above it
        ({}, {CAROL: 50}, True),  # add a user
        ({}, {CAROL: 51}, False),
        ({BOB: 10}, {BOB: 0}, True),  # demote a lower user
        ({BOB: 10}, {}, True),  # remove a lower user
        ({"@mod2:a.example": 50}, {"@mod2:a.example": 0}, False),  # demote an equal
        ({"@mod2:a.example": 50}, {}, False),  # remove an equal
        ({"@mod2:a.example": 50}, {"@mod2:a.example": 50}, True),  # unchanged equal
        ({}, {MOD: 0}, True),  # demote oneself
        ({}, {MOD: 51}, False),  # promote oneself
        ({BOB: -5}, {BOB: -10}, True),
    ],
)
def test_user_changes(rv: RoomVersion, base: dict[str, int], new: dict[str, int], ok: bool) -> None:
    room = standard_room(rv, users=base)
    current = dict(room.state[(PL, "")].content["users"])
    for user in base:
        current.pop(user)
    current.update(new)
    assert change(room, MOD, {"users": current}) is ok


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_moderator_cannot_touch_the_creator_before_v12(rv: RoomVersion) -> None:
    room = standard_room(rv)
    assert not change(room, MOD, {"users": {ALICE: 0, MOD: 50}})
    assert not change(room, MOD, {"users": {MOD: 50}})  # removing ALICE's 100
    assert change(room, MOD, {"users": {ALICE: 100, MOD: 50, BOB: 10}})


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_user_without_power_cannot_change_power_levels(rv: RoomVersion) -> None:
    room = standard_room(rv)
    content = room.state[(PL, "")].content
    assert not change(room, BOB, dict(content))
    assert not change(room, CAROL, dict(content))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_power_levels_event_level_override(rv: RoomVersion) -> None:
    room = standard_room(rv, events={PL: 100})
    content = room.state[(PL, "")].content
    assert not change(room, MOD, dict(content))
    assert change(room, ALICE, dict(content))


def test_v12_creator_may_set_any_level() -> None:
    room = standard_room(V12)
    huge = 2**53 - 1
    assert change(room, ALICE, pl_content(V12, {BOB: huge}, ban=huge, events={PL: huge}))
    room.put(PL, ALICE, pl_content(V12, {BOB: huge}, ban=huge, events={PL: huge}))
    assert change(room, ALICE, pl_content(V12))  # and take them away again
    assert not change(room, BOB, pl_content(V12, {BOB: huge, ALICE: 0}))
