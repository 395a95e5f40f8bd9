"""The servers a new event goes to come from the database as distinct server names
(``OutboxStore.joined_servers_in``: one row per server, not per member, on every send);
a server name keeps its port, and only joined members count."""

from __future__ import annotations

from federation.outbox_store import OutboxStore
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room


async def test_joined_servers_are_distinct_names_of_joined_members(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    db = hs.rooms_area.rooms.events.db
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
    room = await hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    any_nid = await db.fetchval(
        "SELECT MIN(event_nid) FROM events WHERE room_nid = $1", room.room_nid
    )
    remote = [
        ("@bob:remote.example:8448", "join"),
        ("@carol:remote.example:8448", "join"),
        ("@dan:other.example", "leave"),
        ("@erin:[::1]:8448", "join"),
        ("@frank:third.example", "invite"),
    ]
    async with db.transaction() as q:
        for user_id, membership in remote:
            await q.execute(
                "INSERT INTO room_memberships (room_nid, user_id, membership, event_nid,"
                " stream_ordering) VALUES ($1, $2, $3, $4, 0)",
                room.room_nid,
                user_id,
                membership,
                any_nid,
            )
    store = OutboxStore(db)
    async with db.transaction() as q:
        servers = await store.joined_servers_in(q, room.room_nid)
    assert servers == {"localhost", "remote.example:8448", "[::1]:8448"}
