"""Guests and rooms on another server (Sytest 30rooms/13guestaccess, "over
federation"): a guest sees its invite to a remote room in /sync, and may accept
it only when the invite's stripped state shows m.room.guest_access can_join
(this server holds no other state of a room it is not in; Myelin's invites
carry that event).
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register, settle
from tests.helpers import Api, User


async def _invites(api: Api, user: User) -> dict[str, Any]:
    r = await api.get("/sync?timeout=0", token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body.get("rooms", {}).get("invite", {}))


async def test_guest_accepts_remote_invite_only_where_guests_may_join(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, registration={"allow_guests": True}, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, _ = await register(b, "bob")
    guest = await api_b.register_guest()
    rooms = {}
    for access in ("can_join", "forbidden"):
        r = await api_a.post(
            "/createRoom",
            {
                "preset": "private_chat",
                "initial_state": [
                    {"type": "m.room.guest_access", "content": {"guest_access": access}}
                ],
            },
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        rooms[access] = r.body["room_id"]
        r = await api_a.post(
            f"/rooms/{q(rooms[access])}/invite",
            {"user_id": guest.user_id},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
    await settle(a, b)
    invites = await eventually(lambda: _invites(api_b, guest), lambda i: len(i) == 2)
    assert set(invites) == set(rooms.values())

    r = await api_b.post(
        f"/join/{q(rooms['forbidden'])}?via={q(name(a))}", {}, token=guest.access_token
    )
    assert (r.status, r.body.get("errcode")) == (403, "M_FORBIDDEN"), r.body
    r = await api_b.post(
        f"/join/{q(rooms['can_join'])}?via={q(name(a))}", {}, token=guest.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_a.get(f"/rooms/{q(rooms['can_join'])}/joined_members", token=alice.access_token)
    assert guest.user_id in r.body["joined"]
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
