"""Presence when a room starts spanning two servers: each side learns the current
presence of the other's members at the join, not only at their next change (Sytest
"New federated private chats get full presence information (SYN-115)")."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually, federated, register
from tests.helpers import Api, User


async def set_presence(server: RunningServer, user: User, state: str) -> None:
    async with Api(server.client_url) as api:
        r = await api.put(
            f"/presence/{quote(user.user_id)}/status", {"presence": state}, token=user.access_token
        )
        assert r.status == 200, r.body


async def presence_of(server: RunningServer, viewer: User, user_id: str) -> Any:
    async with Api(server.client_url) as api:
        r = await api.get(f"/presence/{quote(user_id)}/status", token=viewer.access_token)
        return r.body if r.status == 200 else None


async def synced_presence(server: RunningServer, user: User, since: str) -> set[str]:
    async with Api(server.client_url) as api:
        r = await api.get("/sync", token=user.access_token, params={"since": since})
        assert r.status == 200, r.body
        return {e["sender"] for e in r.body["presence"]["events"]}


async def test_a_new_shared_room_brings_each_side_the_others_presence(
    make_server: ServerFactory,
) -> None:
    a, b = await federated(make_server), await federated(make_server)
    alice, bob = await register(a, "alice"), await register(b, "bob")
    # Both are online before they share any room: neither server has told the other.
    await set_presence(a, alice, "online")
    await set_presence(b, bob, "online")
    async with Api(a.client_url) as api_a, Api(b.client_url) as api_b:
        r = await api_a.get("/sync", token=alice.access_token)
        since_a = r.body["next_batch"]
        r = await api_b.get("/sync", token=bob.access_token)
        since_b = r.body["next_batch"]
        r = await api_a.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        r = await api_a.post(
            f"/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await api_b.post(f"/join/{quote(room_id)}", {}, token=bob.access_token)
        assert r.status == 200, r.body

    def online(p: Any) -> bool:
        return isinstance(p, dict) and p.get("presence") == "online"

    assert online(await eventually(lambda: presence_of(a, alice, bob.user_id), online))
    assert online(await eventually(lambda: presence_of(b, bob, alice.user_id), online))
    # And each sees the other's presence in /sync.
    assert bob.user_id in await synced_presence(a, alice, since_a)
    assert alice.user_id in await synced_presence(b, bob, since_b)
