"""An invite from another server, for a room this server is not in, is stored
out-of-band as the room's first event here; it still notifies the invitee
(.m.rule.invite_for_me): the push evaluator, behind the invite's transaction,
writes the invitee's notification row."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register


async def test_remote_invite_notifies_the_invitee(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api_a.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert name(a) != name(b)

    async def notes() -> list[dict[str, Any]]:
        r = await api_b.get("/notifications", token=bob.access_token)
        assert r.status == 200, r.body
        return list(r.body["notifications"])

    got = await eventually(notes, lambda n: len(n) > 0)
    assert len(got) == 1
    event = got[0]["event"]
    assert event["type"] == "m.room.member" and event["state_key"] == bob.user_id
    assert event["content"]["membership"] == "invite"
    assert got[0]["room_id"] == room_id and "notify" in got[0]["actions"]
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
