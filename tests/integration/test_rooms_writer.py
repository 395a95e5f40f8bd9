"""The single writer per room, and account hooks (deactivation leaves rooms)."""

from __future__ import annotations

import asyncio

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.test_account_management import password_auth
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def test_concurrent_sends_stay_linear(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    ids = await asyncio.gather(
        *(send_text(api, alice, room_id, f"c{i}", f"c{i}") for i in range(20))
    )
    assert len(set(ids)) == 20
    rooms = server.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    # One writer: every event built on the previous one, so exactly one extremity.
    extremities = await rooms.events.extremities(room.room_nid)
    assert len(extremities) == 1
    stored = await rooms.events.by_ids(ids)
    depths = sorted(s.event.depth for s in stored.values())
    assert depths == list(range(depths[0], depths[0] + 20))
    for s in stored.values():
        assert len(s.event.prev_event_ids) == 1


async def test_deactivation_leaves_rooms(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.post("/account/deactivate", {}, token=bob.access_token)
    assert r.status == 401
    auth = password_auth(bob, r.body["session"])
    r = await api.post("/account/deactivate", {"auth": auth}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.get(f"/rooms/{room_id}/joined_members", token=alice.access_token)
    assert list(r.body["joined"]) == [alice.user_id]
