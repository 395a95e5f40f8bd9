"""check_signatures for an invite redeeming a third-party invite: the invited user's
server may sign it instead of the inviter's (server-server "Validating hashes and
signatures on received events"), but only while the event is intact."""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import VerifyKey

from homeserver.events.builder import build_event
from homeserver.events.keys import generate_signing_key
from homeserver.events.model import Event
from homeserver.events.room_versions import V10, V12, RoomVersion
from homeserver.rooms.checks import EventRejected, check_signatures

INVITER, INVITEE, OTHER = "@alice:a.example", "@bob:b.example", "@carol:c.example"
KEY_A, KEY_B, KEY_C = (generate_signing_key(v) for v in ("a1", "b1", "c1"))
KEYS = {
    ("a.example", KEY_A.key_id): KEY_A.verify_key,
    ("b.example", KEY_B.key_id): KEY_B.verify_key,
    ("c.example", KEY_C.key_id): KEY_C.verify_key,
}
SIGNED = {"mxid": INVITEE, "token": "tok", "signatures": {"id.example": {"ed25519:0": "x"}}}


async def lookup(server: str, key_id: str) -> VerifyKey | None:
    return KEYS.get((server, key_id))


def invite(rv: RoomVersion, content: dict[str, Any], by: str, target: str = INVITEE) -> Event:
    fields = {
        "type": "m.room.member",
        "room_id": "!room:a.example",
        "sender": INVITER,
        "state_key": target,
        "content": {"membership": "invite", **content},
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "depth": 5,
        "origin_server_ts": 1,
    }
    key = {"a.example": KEY_A, "b.example": KEY_B, "c.example": KEY_C}[by]
    return build_event(rv, fields, by, key)


@pytest.mark.parametrize("rv", [V10, V12], ids=["v10", "v12"])
async def test_invited_server_may_sign_a_third_party_invite(rv: RoomVersion) -> None:
    await check_signatures(
        invite(rv, {"third_party_invite": {"signed": SIGNED}}, "b.example"), lookup
    )
    # The inviter's own server, as for any event, still does.
    await check_signatures(
        invite(rv, {"third_party_invite": {"signed": SIGNED}}, "a.example"), lookup
    )


@pytest.mark.parametrize("rv", [V10, V12], ids=["v10", "v12"])
async def test_others_may_not(rv: RoomVersion) -> None:
    # An ordinary invite signed by the invitee's server: not the sender's.
    with pytest.raises(EventRejected):
        await check_signatures(invite(rv, {}, "b.example"), lookup)
    # A third server that is neither the inviter's nor the invitee's.
    with pytest.raises(EventRejected):
        tpi = invite(rv, {"third_party_invite": {"signed": SIGNED}}, "c.example")
        await check_signatures(tpi, lookup)


@pytest.mark.parametrize("rv", [V10, V12], ids=["v10", "v12"])
async def test_a_tampered_third_party_invite_needs_the_senders_server(rv: RoomVersion) -> None:
    event = invite(rv, {"third_party_invite": {"signed": SIGNED}}, "b.example")
    # Content changed after hashing: stored redacted, it would lose third_party_invite
    # (before v11) and pass as an ordinary invite by Alice, whose server never signed.
    pdu = dict(event.pdu)
    pdu["content"] = {**pdu["content"], "reason": "changed"}
    with pytest.raises(EventRejected):
        await check_signatures(Event(event.event_id, pdu, rv), lookup)
