"""A room upgraded on another server: this server's aliases and directory
listing of the old room follow to the successor when one of its users joins
it (Sytest 30rooms/60version_upgrade: remote aliases, remote public directory),
and only when the old room's tombstone names the successor.
"""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.federation.rooms_support import name, q, register, settle
from tests.helpers import Api, User


async def _join(api: Api, user: User, room_id: str, via: RunningServer) -> None:
    r = await api.post(f"/join/{q(room_id)}?via={q(name(via))}", {}, token=user.access_token)
    assert r.status == 200, r.body


async def test_remote_aliases_and_listing_follow_the_upgrade(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    old = r.body["room_id"]
    await _join(api_b, bob, old, a)
    await settle(a, b)
    # Bob gets the power to list the room in B's directory, and names it on B.
    r = await api_a.get(f"/rooms/{q(old)}/state/m.room.power_levels", token=alice.access_token)
    levels = r.body
    levels["users"][bob.user_id] = 100
    r = await api_a.put(
        f"/rooms/{q(old)}/state/m.room.power_levels", levels, token=alice.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b)
    alias = f"#club:{name(b)}"
    r = await api_b.put(f"/directory/room/{q(alias)}", {"room_id": old}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api_b.put(
        f"/directory/list/room/{q(old)}", {"visibility": "public"}, token=bob.access_token
    )
    assert r.status == 200, r.body

    # A room of B's that merely claims the old room as its predecessor moves nothing.
    r = await api_b.post(
        "/createRoom",
        {"creation_content": {"predecessor": {"room_id": old, "event_id": "$x"}}},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    assert (await api_b.get(f"/directory/room/{q(alias)}")).body["room_id"] == old

    r = await api_a.post(
        f"/rooms/{q(old)}/upgrade", {"new_version": "12"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    await settle(a, b)
    await _join(api_b, bob, new, a)
    await settle(a, b)

    assert (await api_b.get(f"/directory/room/{q(alias)}")).body["room_id"] == new
    r = await api_b.get(f"/directory/list/room/{q(new)}")
    assert r.body == {"visibility": "public"}
    assert (await api_b.get(f"/directory/list/room/{q(old)}")).body == {"visibility": "private"}
    listed = [c["room_id"] for c in (await api_b.get("/publicRooms")).body["chunk"]]
    assert new in listed and old not in listed
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
