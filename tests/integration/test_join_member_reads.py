"""A local join into a big room reads no row per member: whether this server is
resident is one row at most (``MembershipStore.has_joined_on``), and the servers in
the room (presence on join) come from the database as distinct server names
(``MembershipStore.joined_servers``). Both answer exactly: ports kept, only joined
members count, the server name compared case for case and ``_`` taken literally."""

from __future__ import annotations

import pytest

from homeserver.app import HomeServer
from homeserver.storage.database import count_statements
from homeserver.storage.sql import joined_servers_sql
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room

# members() reads every joined member's row: a join must not ask for it. (Nor is the
# local members' list, LocalMembersCache, read again: the commit brings it up to date.)
EVERY_MEMBER = (
    "SELECT room_nid, user_id, membership, event_nid, stream_ordering FROM room_memberships"
    " WHERE room_nid = $1 AND membership IN"
)


async def _add_rows(hs: HomeServer, room_nid: int, rows: list[tuple[str, str]]) -> None:
    db = hs.rooms_area.rooms.events.db
    any_nid = await db.fetchval("SELECT MIN(event_nid) FROM events WHERE room_nid = $1", room_nid)
    async with db.transaction() as q:
        for user_id, membership in rows:
            await q.execute(
                "INSERT INTO room_memberships (room_nid, user_id, membership, event_nid,"
                " stream_ordering) VALUES ($1, $2, $3, $4, 0)",
                room_nid,
                user_id,
                membership,
                any_nid,
            )


async def test_joined_servers_and_residency_answer_exactly(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
    rooms = hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    await _add_rows(
        hs,
        room.room_nid,
        [
            ("@bob:remote.example:8448", "join"),
            ("@carol:remote.example:8448", "join"),
            ("@dan:other.example", "leave"),
            ("@erin:[::1]:8448", "join"),
            ("@frank:third.example", "invite"),
            ("@gina:LOCALHOST", "join"),
            ("@hal:xlocalhost", "join"),
        ],
    )
    store = rooms.members
    assert await store.joined_servers(room.room_nid) == {
        "localhost",
        "remote.example:8448",
        "[::1]:8448",
        "LOCALHOST",
        "xlocalhost",
    }
    assert await store.has_joined_on(room.room_nid, "localhost")
    assert await store.has_joined_on(room.room_nid, "remote.example:8448")
    # Not a server of the room, though the tail of one:
    assert await store.has_joined_on(room.room_nid, "example:8448") is False
    assert await store.has_joined_on(room.room_nid, "other.example") is False  # left
    assert await store.has_joined_on(room.room_nid, "third.example") is False  # invited
    assert await store.has_joined_on(room.room_nid, "remote_example:8448") is False

    # Alice leaves: only look-alike names remain, and they are not this server.
    async with Api(server.client_url) as api:
        r = await api.post(f"/rooms/{room_id}/leave", {}, token=alice.access_token)
        assert r.status == 200, r.body
    assert await store.has_joined_on(room.room_nid, "localhost") is False
    assert "localhost" not in await store.joined_servers(room.room_nid)
    assert await hs.rooms_area.memberships.is_resident(room) is False


async def test_a_local_join_reads_no_row_per_member(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room_id = await create_room(api, alice, preset="public_chat")
        room = await hs.rooms_area.rooms.rooms.get_room(room_id)
        assert room is not None
        await _add_rows(hs, room.room_nid, [(f"@m{i}:remote.example", "join") for i in range(50)])
        with count_statements() as counter:
            await hs.rooms_area.memberships.join(bob.user_id, room_id)
        assert counter.total > 0
        assert not [s for s in counter.by_sql if EVERY_MEMBER in s], counter.by_sql
        assert await hs.rooms_area.memberships.is_resident(room)
        assert bob.user_id in await hs.rooms_area.rooms.members.local_users(
            room.room_nid, "localhost"
        )


# The read of a room's local members (MembershipStore._read_local_users).
LOCAL_MEMBERS_READ = "SELECT user_id FROM room_memberships WHERE room_nid = $1"


async def test_a_join_and_a_leave_keep_the_local_members_list_without_reading_it(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    store = hs.rooms_area.rooms.members
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room_id = await create_room(api, alice, preset="public_chat")
        room = await hs.rooms_area.rooms.rooms.get_room(room_id)
        assert room is not None
        await _add_rows(hs, room.room_nid, [(f"@m{i}:remote.example", "join") for i in range(20)])
        store.local_cache.changed([room.room_nid])  # rows written behind the cache's back
        assert await store.local_users(room.room_nid, "localhost") == [alice.user_id]
        with count_statements() as counter:
            await hs.rooms_area.memberships.join(bob.user_id, room_id)
            listed = await store.local_users(room.room_nid, "localhost")
        assert sorted(listed) == sorted([alice.user_id, bob.user_id])
        assert not [s for s in counter.by_sql if s.startswith(LOCAL_MEMBERS_READ)], counter.by_sql
        with count_statements() as counter:
            await hs.rooms_area.memberships.leave(bob.user_id, room_id)
            listed = await store.local_users(room.room_nid, "localhost")
        assert listed == [alice.user_id]
        assert not [s for s in counter.by_sql if s.startswith(LOCAL_MEMBERS_READ)], counter.by_sql
        # What the database says, read afresh, is the same.
        store.local_cache.changed([room.room_nid])
        assert await store.local_users(room.room_nid, "localhost") == [alice.user_id]


async def test_joined_servers_walk_the_index_not_the_members(make_server: ServerFactory) -> None:
    """One index probe per server (migration 0440), not a row per member: on SQLite the
    plan must search ``room_memberships_servers`` by a range on the server name."""
    server = await make_server()
    db = server.hs.rooms_area.rooms.members.db
    if db.engine != "sqlite":
        pytest.skip("PostgreSQL's plan depends on its statistics; answers are checked above")
    plan = await db.fetchall("EXPLAIN QUERY PLAN " + joined_servers_sql("sqlite"), 1)
    details = [str(r[3]) for r in plan]
    assert any("USING INDEX room_memberships_servers" in d and "<expr>>?" in d for d in details), (
        details
    )
    assert not any(d.startswith("SCAN room_memberships") for d in details), details
