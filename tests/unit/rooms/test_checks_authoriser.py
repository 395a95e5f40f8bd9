"""check_event's side of a restricted join: the authorising server's signature on a
membership event naming ``join_authorised_via_users_server`` is looked up and verified
(appendices "Checking for a Signature") for the pure auth rules."""

from __future__ import annotations

from typing import Any

from nacl.signing import VerifyKey

from homeserver.events.builder import build_event
from homeserver.events.keys import generate_signing_key
from homeserver.events.model import Event
from homeserver.events.room_versions import V12
from homeserver.events.signing import sign_event
from homeserver.rooms.checks import authoriser_signature

JOINER, AUTHORISER = "@bob:b.example", "@alice:a.example"
KEY_A, KEY_B = generate_signing_key("a1"), generate_signing_key("b1")
KEYS = {
    ("a.example", KEY_A.key_id): KEY_A.verify_key,
    ("b.example", KEY_B.key_id): KEY_B.verify_key,
}


async def lookup(server: str, key_id: str) -> VerifyKey | None:
    return KEYS.get((server, key_id))


def join(content: dict[str, Any], *, countersign: bool) -> Event:
    fields = {
        "type": "m.room.member",
        "room_id": "!room",
        "sender": JOINER,
        "state_key": JOINER,
        "content": {"membership": "join", **content},
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "depth": 5,
        "origin_server_ts": 1,
    }
    event = build_event(V12, fields, "b.example", KEY_B)
    if not countersign:
        return event
    return Event(event.event_id, sign_event(event.pdu, "a.example", KEY_A, V12), V12)


async def test_countersigned_join_is_verified_for_the_authorising_server() -> None:
    event = join({"join_authorised_via_users_server": AUTHORISER}, countersign=True)
    verify = await authoriser_signature(event, lookup)
    assert verify is not None
    assert verify(event, "a.example") is True
    assert verify(event, "b.example") is False  # only the authoriser's server is vouched for


async def test_join_without_the_authorisers_signature_fails_the_check() -> None:
    event = join({"join_authorised_via_users_server": AUTHORISER}, countersign=False)
    verify = await authoriser_signature(event, lookup)
    assert verify is not None and verify(event, "a.example") is False


async def test_forged_authoriser_signature_fails_the_check() -> None:
    event = join({"join_authorised_via_users_server": AUTHORISER}, countersign=True)
    forged = dict(event.pdu)
    forged["signatures"] = {
        **event.pdu["signatures"],
        "a.example": {KEY_A.key_id: event.pdu["signatures"]["b.example"][KEY_B.key_id]},
    }
    bad = Event(event.event_id, forged, V12)
    verify = await authoriser_signature(bad, lookup)
    assert verify is not None and verify(bad, "a.example") is False


async def test_no_authoriser_no_check() -> None:
    assert await authoriser_signature(join({}, countersign=False), lookup) is None
