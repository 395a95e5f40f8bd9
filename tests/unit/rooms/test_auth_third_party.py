"""Third-party invites: rule 4.4.1 (v12 5.4.1) and rule 6 (v12 7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from nacl.signing import SigningKey

from homeserver.events.canonical import encode_base64, encode_canonical_json
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import verify_third_party_signed

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
def test_default_verifier_refuses_an_unsigned_block(rv: RoomVersion) -> None:
    # Without a verifier passed in, the rules check the ed25519 signatures themselves.
    room = room_with_invite(rv)
    assert not room.allowed(tp_invite(room))


def _signed(key: SigningKey, body: dict[str, Any], key_id: str = "ed25519:0") -> dict[str, Any]:
    sig = key.sign(encode_canonical_json(body)).signature
    return {**body, "signatures": {"id.example": {key_id: encode_base64(sig)}}}


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_default_verifier_checks_signatures_against_the_event_keys(rv: RoomVersion) -> None:
    published, ephemeral, stranger = (SigningKey.generate() for _ in range(3))
    room = standard_room(rv)
    std = encode_base64(bytes(published.verify_key))
    # An identity server may publish URL-safe base64: both forms are read.
    url_safe = encode_base64(bytes(ephemeral.verify_key)).replace("+", "-").replace("/", "_")
    room.put(TPI, MOD, {"public_key": std, "public_keys": [{"public_key": url_safe}]}, "tok")
    body = {"mxid": CAROL, "token": "tok"}

    def invite(signed: dict[str, Any]) -> Any:
        return room.member(MOD, CAROL, "invite", third_party_invite={"signed": signed})

    assert room.allowed(invite(_signed(published, body)))
    # The key id does not matter: the ephemeral key signs under "ed25519:0" (as Sytest).
    assert room.allowed(invite(_signed(ephemeral, body)))
    assert not room.allowed(invite(_signed(stranger, body)))
    # A signature over other content does not verify.
    forged = {**_signed(published, body), "mxid": DAVE}
    assert not verify_third_party_signed(forged, [std])
    assert not verify_third_party_signed(_signed(published, body, "curve25519:0"), [std])
    assert not verify_third_party_signed(_signed(published, body), ["not base64!"])


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
