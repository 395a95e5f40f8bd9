"""Rule 1: m.room.create; v12 rule 2: the room id names the create event."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.auth import AuthError, check_auth, check_auth_events_selection

from .authkit import ALICE, BOB, VERSION_IDS, VERSIONS, Room, standard_room


def create_event(rv: RoomVersion, **overrides: Any) -> Event:
    content: dict[str, Any] = {"room_version": rv.identifier}
    if rv is V10:
        content["creator"] = ALICE
    pdu: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": ALICE,
        "content": content,
        "prev_events": [],
        "auth_events": [],
    }
    if not rv.room_id_from_create_event:
        pdu["room_id"] = "!r:a.example"
    content.update(overrides.pop("content", {}))
    pdu.update(overrides)
    return Event("$create", pdu, rv)


def allowed(event: Event) -> bool:
    try:
        check_auth(event, {})
    except AuthError:
        return False
    return True


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_valid_create_is_allowed(rv: RoomVersion) -> None:
    assert allowed(create_event(rv))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_create_with_prev_events_is_refused(rv: RoomVersion) -> None:
    assert not allowed(create_event(rv, prev_events=["$x"]))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_create_with_unknown_room_version_is_refused(rv: RoomVersion) -> None:
    assert not allowed(create_event(rv, content={"room_version": "org.example.custom"}))
    assert not allowed(create_event(rv, content={"room_version": 12}))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_create_without_room_version_is_allowed(rv: RoomVersion) -> None:
    event = create_event(rv)
    del event.pdu["content"]["room_version"]
    assert allowed(event)


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_create_room_id_domain_must_match_sender(rv: RoomVersion) -> None:
    assert not allowed(create_event(rv, room_id="!r:elsewhere.example"))
    event = create_event(rv)
    del event.pdu["room_id"]
    assert not allowed(event)


def test_v12_create_with_room_id_is_refused() -> None:
    assert not allowed(create_event(V12, room_id="!r:a.example"))


def test_v10_create_without_creator_is_refused() -> None:
    event = create_event(V10)
    del event.pdu["content"]["creator"]
    assert not allowed(event)


@pytest.mark.parametrize("rv", [V11, V12], ids=["11", "12"])
def test_v11_plus_create_without_creator_is_allowed(rv: RoomVersion) -> None:
    assert "creator" not in create_event(rv).content
    assert allowed(create_event(rv))


@pytest.mark.parametrize(
    ("additional", "ok"),
    [
        ([], True),
        (["@bob:b.example"], True),
        (["@bob:b.example", "@carol:c.example:8448"], True),
        (["@Historical Name:b.example"], True),  # historical localparts are accepted
        ("@bob:b.example", False),
        ([5], False),
        (["bob"], False),
        (["@bob"], False),
        (["@bob:"], False),
        (["@bob:bad domain"], False),
        (["@bo\x00b:b.example"], False),
        (["@" + "x" * 250 + ":b.example"], False),
        (None, False),
    ],
)
def test_v12_additional_creators_must_be_user_ids(additional: object, ok: bool) -> None:
    assert allowed(create_event(V12, content={"additional_creators": additional})) is ok


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_additional_creators_are_not_checked_before_v12(rv: RoomVersion) -> None:
    assert allowed(create_event(rv, content={"additional_creators": "nonsense"}))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_create_passes_auth_events_selection_untouched(rv: RoomVersion) -> None:
    check_auth_events_selection(create_event(rv), [])


def test_v12_room_id_must_name_the_create_event() -> None:
    room = standard_room(V12)
    assert room.room_id == "!CreateEventHash"
    good = room.make("m.room.message", BOB, {"body": "hi"})
    assert room.allowed(good)
    bad = room.make("m.room.message", BOB, {"body": "hi"})
    bad.pdu["room_id"] = "!SomeOtherHash"
    assert not room.allowed(bad)
    missing = room.make("m.room.message", BOB, {})
    del missing.pdu["room_id"]
    assert not room.allowed(missing)


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_room_id_is_not_tied_to_create_id_before_v12(rv: RoomVersion) -> None:
    room = standard_room(rv)
    assert room.allowed(room.make("m.room.message", BOB, {}))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_event_without_create_in_state_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    del room.state[("m.room.create", "")]
    assert not room.allowed(room.make("m.room.message", BOB, {}))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_m_federate_false_keeps_other_servers_out(rv: RoomVersion) -> None:
    room = Room(rv, content={"m.federate": False})
    room.set_member(ALICE, "join")
    room.put("m.room.join_rules", ALICE, {"join_rule": "public"})
    assert not room.allowed(room.member(BOB, BOB, "join"))
    assert room.allowed(room.member("@eve:a.example", "@eve:a.example", "join"))
    assert room.allowed(room.make("m.room.message", ALICE, {}))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_m_federate_true_lets_other_servers_in(rv: RoomVersion) -> None:
    room = Room(rv, content={"m.federate": True})
    room.set_member(ALICE, "join")
    room.put("m.room.join_rules", ALICE, {"join_rule": "public"})
    assert room.allowed(room.member(BOB, BOB, "join"))
