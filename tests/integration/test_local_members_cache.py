"""The local members of a room, read for every send's /sync wake-up, come from a cache
(rooms/store/local_members_cache.py) that joins, invites, leaves and a purge invalidate:
a member who just joined is woken by the next send, one who left is not listed, and a
repeated send reads no membership rows at all."""

from __future__ import annotations

import asyncio

from homeserver.app import HomeServer, RunningServer
from homeserver.storage.database import count_statements
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

WAIT_S = 30.0  # a bound for "the long-poll was woken", not a measurement


async def local_users(hs: HomeServer, room_id: str) -> list[str]:
    rooms = hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    return sorted(await rooms.members.local_users(room.room_nid, rooms.server_name))


async def test_membership_changes_reach_the_cached_list_and_wake_the_joiner(
    server: RunningServer, api: Api
) -> None:
    hs = server.hs
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await create_room(api, alice, preset="public_chat")
    await send_text(api, alice, room_id, "warm", "t0")
    assert await local_users(hs, room_id) == [alice.user_id]
    # Served from the cache now: no statement reads the room's memberships.
    with count_statements() as counter:
        assert await local_users(hs, room_id) == [alice.user_id]
    assert not [s for s in counter.by_sql if "room_memberships" in s], counter.by_sql

    r = await api.post(f"/join/{room_id}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert await local_users(hs, room_id) == sorted([alice.user_id, bob.user_id])
    # Bob's long-poll is woken by Alice's next send (the cached list has him).
    first = await api.get("/sync", token=bob.access_token)
    poll = asyncio.create_task(
        api.get(
            "/sync",
            token=bob.access_token,
            params={"since": first.body["next_batch"], "timeout": "120000"},
        )
    )
    await asyncio.sleep(0.2)  # let the poll start waiting (correct either way)
    event_id = await send_text(api, alice, room_id, "for bob", "t1")
    woken = await asyncio.wait_for(poll, WAIT_S)
    assert woken.status == 200, woken.body
    timeline = woken.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert event_id in [e["event_id"] for e in timeline]

    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert carol.user_id in await local_users(hs, room_id)
    r = await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert await local_users(hs, room_id) == sorted([alice.user_id, carol.user_id])
