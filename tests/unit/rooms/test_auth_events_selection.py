"""Auth events selection and rule 2 (v10/v11) / rule 3 (v12) on auth_events."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth_events_selection

from .authkit import (
    ALICE,
    BOB,
    CAROL,
    CREATE,
    JR,
    MEMBER,
    MOD,
    PL,
    TPI,
    VERSION_IDS,
    VERSIONS,
    Room,
    standard_room,
)

C = (CREATE, "")
P = (PL, "")
J = (JR, "")


def expected(rv: RoomVersion, *rest: tuple[str, str]) -> list[tuple[str, str]]:
    head = [] if rv.room_id_from_create_event else [C]
    return [*head, P, *rest]


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_create_selects_nothing(rv: RoomVersion) -> None:
    assert auth_types_for_event(CREATE, "", ALICE, {}, rv) == []


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_message_selects_create_power_levels_and_sender(rv: RoomVersion) -> None:
    got = auth_types_for_event("m.room.message", None, BOB, {"body": "x"}, rv)
    assert got == expected(rv, (MEMBER, BOB))


def test_v12_never_selects_create() -> None:
    got = auth_types_for_event(MEMBER, BOB, BOB, {"membership": "join"}, V12)
    assert C not in got
    assert got == [P, (MEMBER, BOB), J]


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("sender", "target", "content", "extra"),
    [
        (BOB, BOB, {"membership": "join"}, [J]),
        (BOB, BOB, {"membership": "knock"}, [J]),
        (BOB, BOB, {"membership": "leave"}, []),
        (MOD, BOB, {"membership": "ban"}, [(MEMBER, BOB)]),
        (MOD, BOB, {"membership": "invite"}, [(MEMBER, BOB), J]),
        (
            MOD,
            BOB,
            {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
            [(MEMBER, BOB), J, (TPI, "tok")],
        ),
        (MOD, BOB, {"membership": "invite", "third_party_invite": {}}, [(MEMBER, BOB), J]),
        (
            BOB,
            BOB,
            {"membership": "join", "join_authorised_via_users_server": MOD},
            [J, (MEMBER, MOD)],
        ),
        (BOB, BOB, {"membership": "join", "join_authorised_via_users_server": BOB}, [J]),
        (BOB, BOB, {"membership": "leave", "join_authorised_via_users_server": MOD}, []),
    ],
)
def test_member_selection(
    rv: RoomVersion,
    sender: str,
    target: str,
    content: dict[str, object],
    extra: list[tuple[str, str]],
) -> None:
    got = auth_types_for_event(MEMBER, target, sender, content, rv)
    assert got == expected(rv, (MEMBER, sender), *extra)
    assert len(got) == len(set(got))


def _cited(
    room: Room,
    event_type: str,
    sender: str,
    content: dict[str, object],
    state_key: str | None,
    keys: Sequence[tuple[str, str]],
) -> tuple[Event, list[Event]]:
    auth = [room.state[k] for k in keys]
    event = room.make(
        event_type, sender, content, state_key, auth_events=[e.event_id for e in auth]
    )
    return event, auth


def _ok(event: Event, auth: Sequence[Event], rejected: Sequence[str] = ()) -> bool:
    try:
        check_auth_events_selection(event, auth, rejected_event_ids=rejected)
    except AuthError:
        return False
    return True


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_correct_auth_events_pass(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, BOB)))
    assert _ok(event, auth)
    invite, auth = _cited(
        room, MEMBER, MOD, {"membership": "invite"}, CAROL, expected(rv, (MEMBER, MOD), J)
    )
    assert _ok(invite, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_subset_of_selection_passes(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv))
    assert _ok(event, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_auth_event_not_in_selection_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, BOB), J))
    assert not _ok(event, auth)
    other, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, MOD)))
    assert not _ok(other, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_duplicate_type_and_state_key_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    old_pl = room.state[P]
    new_pl = room.put(PL, ALICE, dict(old_pl.content))
    auth = [*(room.state[k] for k in expected(rv, (MEMBER, BOB))), old_pl]
    event = room.make("m.room.message", BOB, {}, auth_events=[e.event_id for e in auth])
    assert new_pl in auth
    assert not _ok(event, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_rejected_auth_event_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, BOB)))
    assert not _ok(event, auth, rejected=[room.state[P].event_id])


@pytest.mark.parametrize("rv", [V10, V11], ids=["10", "11"])
def test_missing_create_is_refused_before_v12(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, [P, (MEMBER, BOB)])
    assert not _ok(event, auth)


def test_v12_create_in_auth_events_is_refused() -> None:
    room = standard_room(V12)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, [C, P, (MEMBER, BOB)])
    assert not _ok(event, auth)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, [P, (MEMBER, BOB)])
    assert _ok(event, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_auth_event_from_another_room_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, BOB)))
    room.state[(MEMBER, BOB)].pdu["room_id"] = "!other:a.example"
    assert not _ok(event, auth)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_auth_events_must_be_the_cited_ones(rv: RoomVersion) -> None:
    room = standard_room(rv)
    event, auth = _cited(room, "m.room.message", BOB, {}, None, expected(rv, (MEMBER, BOB)))
    assert not _ok(event, auth[:-1])  # one missing
    stranger = room.make(MEMBER, BOB, {"membership": "join"}, BOB)
    assert not _ok(event, [*auth[:-1], stranger])  # not cited


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_non_state_auth_event_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    message = room.make("m.room.message", BOB, {})
    event = room.make("m.room.message", BOB, {}, auth_events=[message.event_id])
    assert not _ok(event, [message])


def test_v11_selection_matches_v10() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": MOD}
    assert auth_types_for_event(MEMBER, BOB, BOB, content, V10) == auth_types_for_event(
        MEMBER, BOB, BOB, content, V11
    )
