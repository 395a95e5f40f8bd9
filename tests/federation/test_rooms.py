"""Rooms that span three real Myelin servers over loopback TLS."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import (
    name,
    q,
    register,
    send_text,
    settle,
    sync_rooms,
    timeline_bodies,
)

# Also with the first server (a) as three processes and its peers single-process
# (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


@pytest.fixture
async def trio(make_server: ServerFactory) -> tuple[RunningServer, RunningServer, RunningServer]:
    return (
        await make_server(federated=True),
        await make_server(federated=True),
        await make_server(federated=True),
    )


async def test_join_by_alias_and_id_messages_and_leave(
    trio: tuple[RunningServer, RunningServer, RunningServer],
) -> None:
    a, b, c = trio
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    api_c, carol = await register(c, "carol")
    r = await api_a.post(
        "/createRoom",
        {"preset": "public_chat", "room_alias_name": "lobby"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    alias = f"#lobby:{name(a)}"

    # Bob joins by alias (query/directory on A), Carol by id with server_name.
    r = await api_b.post(f"/join/{q(alias)}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert r.body["room_id"] == room_id
    await settle(a, b, c)
    r = await api_c.post(
        f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=carol.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b, c)

    for api, user in ((api_a, alice), (api_b, bob), (api_c, carol)):
        r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
        assert r.status == 200, r.body
        assert set(r.body["joined"]) == {alice.user_id, bob.user_id, carol.user_id}

    await send_text(api_a, alice, room_id, "one from A")
    await settle(a, b, c)
    await send_text(api_b, bob, room_id, "two from B")
    await settle(a, b, c)
    await send_text(api_c, carol, room_id, "three from C")
    await settle(a, b, c)
    expected = ["one from A", "two from B", "three from C"]
    for api, user in ((api_a, alice), (api_b, bob), (api_c, carol)):
        assert await timeline_bodies(api, user, room_id) == expected
        rooms = await sync_rooms(api, user)
        bodies = [
            e["content"].get("body")
            for e in rooms["join"][room_id]["timeline"]["events"]
            if e["type"] == "m.room.message"
        ]
        assert bodies == expected

    # Carol leaves: everyone sees it, and C gets nothing more.
    r = await api_c.post(f"/rooms/{q(room_id)}/leave", {}, token=carol.access_token)
    assert r.status == 200, r.body
    await settle(a, b, c)
    for api, user in ((api_a, alice), (api_b, bob)):
        r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
        assert set(r.body["joined"]) == {alice.user_id, bob.user_id}
    await send_text(api_a, alice, room_id, "after carol left")
    await settle(a, b, c)
    assert (await timeline_bodies(api_b, bob, room_id))[-1] == "after carol left"
    c_room = await c.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert c_room is not None
    c_bodies = [
        s.event.content.get("body")
        for s in await c.hs.rooms_area.events.room_stream(
            c_room.room_nid, after=None, before=None, limit=100, backwards=False
        )
    ]
    assert "after carol left" not in c_bodies and "three from C" in c_bodies
    for api in (api_a, api_b, api_c):
        await api.__aexit__(None, None, None)
