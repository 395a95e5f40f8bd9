"""An initial /sync reads the user's rooms (joins, invites, knocks) with the stream heads,
in one statement (``SyncStore.sync_heads_and_rooms``): the two first reads of every
initial sync were a round trip each on PostgreSQL (issue 15 #5)."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_sync_statement_counts import counted_sync

ROOMS_READ = "FROM room_memberships WHERE user_id = $1 AND membership IN ("


async def test_initial_sync_has_joined_invited_and_knocked_rooms_from_the_heads_read(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        joined = await create_room(api, bob, preset="public_chat")
        invited = await create_room(api, bob)
        knocked = await create_room(
            api,
            bob,
            initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        )
        left = await create_room(api, bob, preset="public_chat")
        for room in (joined, left):
            r = await api.post(f"/join/{room}", {}, token=alice.access_token)
            assert r.status == 200, r.body
        assert (await api.post(f"/rooms/{left}/leave", {}, token=alice.access_token)).status == 200
        r = await api.post(
            f"/rooms/{invited}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 200, r.body
        assert (await api.post(f"/knock/{knocked}", {}, token=alice.access_token)).status == 200

        await counted_sync(hs, alice)  # the first sets the user's presence: heads read again
        body, counter = await counted_sync(hs, alice)
        rooms = body["rooms"]
        assert set(rooms["join"]) == {joined}
        assert set(rooms["invite"]) == {invited}
        assert set(rooms["knock"]) == {knocked}
        assert left not in rooms.get("leave", {})
        reads = [sql for sql in counter.by_sql if ROOMS_READ in sql]
        assert len(reads) == 1 and "SELECT 0 AS kind" in reads[0], reads
