"""Guests leave a room that stops admitting them even when the server died between
the m.room.guest_access change and their leave events: start-up redoes it."""

from __future__ import annotations

import asyncio
import time

from homeserver.app import RunningServer
from tests.conftest import RestartFn, ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room


async def membership(server: RunningServer, room_id: str, user_id: str) -> str | None:
    room = await server.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    m = await server.hs.rooms_area.rooms.members.get(room.room_nid, user_id)
    return None if m is None else m.membership


async def test_guests_removed_at_start_after_a_crash(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    server = await make_server(registration={"allow_guests": True})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        r = await api.post("/register", {}, params={"kind": "guest"})
        assert r.status == 200, r.body
        guest_id = r.body["user_id"]
        room_id = await create_room(api, alice, preset="public_chat")
        path = f"/rooms/{room_id}/state/m.room.guest_access/"
        r = await api.put(path, {"guest_access": "can_join"}, token=alice.access_token)
        assert r.status == 200
        await server.hs.rooms_area.memberships.join(guest_id, room_id)
        assert await membership(server, room_id, guest_id) == "join"
        # The process "dies" right after the commit: the hooks that follow never run.
        server.hs.rooms_area.rooms.event_persisted_hooks.clear()
        r = await api.put(path, {"guest_access": "forbidden"}, token=alice.access_token)
        assert r.status == 200
        assert await membership(server, room_id, guest_id) == "join"
    server = await restart_server(server)
    deadline = time.monotonic() + 30
    while await membership(server, room_id, guest_id) == "join" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await membership(server, room_id, guest_id) == "leave"
