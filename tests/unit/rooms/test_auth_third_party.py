"""Third-party invites: rule 4.4.1 (v12 5.4.1) and rule 6 (v12 7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from homeserver.events.room_versions import RoomVersion

from .authkit import BOB, CAROL, DAVE, MOD, TPI, VERSION_IDS, VERSIONS, Room, no, standard_room, yes


def room_with_invite(rv: RoomVersion, **levels: Any) -> Room:
    room = standard_room(rv, **levels)
    room.put(
        TPI,
        MOD,
        {"display_name": "c...", "public_key": "k1", "public_keys": [{"public_key": "k2"}]},
        "tok",
    )
    return room


def tp_invite(room: Room, sender: str = MOD, target: str = CAROL, **signed: Any) -> Any:
    body: dict[str, Any] = {"mxid": CAROL, "token": "tok", "signatures": {"id.example": {}}}
    body.update(signed)
    return room.member(
        sender, target, "invite", third_party_invite={"display_name": "c...", "signed": body}
    )


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_valid_third_party_invite_is_allowed(rv: RoomVersion) -> None:
    room = room_with_invite(rv)
    calls: list[tuple[Mapping[str, Any], Sequence[str]]] = []

    def verify(signed: Mapping[str, Any], keys: Sequence[str]) -> bool:
        calls.append((signed, keys))
        return True

    event = tp_invite(room)
    assert room.allowed(event, verify_third_party_invite=verify)
    assert calls == [(event.content["third_party_invite"]["signed"], ["k1", "k2"])]


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_third_party_invite_without_verifier_is_refused(rv: RoomVersion) -> None:
    room = room_with_invite(rv)
    assert not room.allowed(tp_invite(room))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_third_party_invite_with_bad_signature_is_refused(rv: RoomVersion) -> None:
    room = room_with_invite(rv)
    assert not room.allowed(tp_invite(room), verify_third_party_invite=no)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda r: r.set_member(CAROL, "ban"), id="target banned"),
        pytest.param(lambda r: r.state.pop((TPI, "tok")), id="no third party invite event"),
    ],
)
def test_third_party_invite_refused_by_state(rv: RoomVersion, mutate: Any) -> None:
    room = room_with_invite(rv)
    mutate(room)
    assert not room.allowed(tp_invite(room), verify_third_party_invite=yes)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("sender", "target", "signed"),
    [
        pytest.param(MOD, CAROL, {"mxid": DAVE}, id="mxid mismatch"),
        pytest.param(MOD, CAROL, {"token": "other"}, id="unknown token"),
        pytest.param(MOD, CAROL, {"mxid": None}, id="no mxid"),
        pytest.param(MOD, CAROL, {"token": 7}, id="token not a string"),
        pytest.param(BOB, CAROL, {}, id="sender is not the inviter"),
    ],
)
def test_third_party_invite_refused_by_content(
    rv: RoomVersion, sender: str, target: str, signed: dict[str, Any]
) -> None:
    room = room_with_invite(rv)
    event = tp_invite(room, sender, target, **signed)
    assert not room.allowed(event, verify_third_party_invite=yes)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_third_party_invite_without_signed_is_refused(rv: RoomVersion) -> None:
    room = room_with_invite(rv)
    for tpi in ({}, {"signed": "x"}, "x"):
        event = room.member(MOD, CAROL, "invite", third_party_invite=tpi)
        assert not room.allowed(event, verify_third_party_invite=yes)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_third_party_invite_ignores_invite_level(rv: RoomVersion) -> None:
    # Rule .4.1 allows on the signature alone; the invite level is rule .4.4.
    room = room_with_invite(rv, invite=100)
    assert room.allowed(tp_invite(room), verify_third_party_invite=yes)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(
    ("sender", "invite_level", "ok"),
    [(BOB, 0, True), (BOB, 50, False), (MOD, 50, True), (CAROL, 0, False)],
)
def test_third_party_invite_event_needs_invite_level(
    rv: RoomVersion, sender: str, invite_level: int, ok: bool
) -> None:
    room = standard_room(rv, invite=invite_level)
    event = room.make(TPI, sender, {"public_key": "k"}, "tok2")
    assert room.allowed(event) is ok


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_third_party_invite_event_skips_state_default(rv: RoomVersion) -> None:
    # Rule 6 [7] allows before the required power level (rule 7 [8]) is read.
    room = standard_room(rv, events={TPI: 100})
    assert room.allowed(room.make(TPI, BOB, {"public_key": "k"}, "tok2"))
