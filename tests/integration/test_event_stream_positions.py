"""Event stream positions: taken without a shared row lock on PostgreSQL, and published
to readers only below every uncommitted one (homeserver/streams/positions.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ENGINE, ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_sync_sections import sync


async def test_out_of_order_commits_are_not_published_past_an_open_transaction(
    make_server: ServerFactory,
) -> None:
    if ENGINE != "postgres":
        pytest.skip("SQLite has one writer: positions commit in the order they are taken")
    server = await make_server()
    events = server.hs.rooms_area.rooms.events
    db = server.hs.db
    start = await events.current_position()
    async with db.transaction() as qa, events.take_stream_ordering(qa) as pos_a:
        # Another writer takes the next position and commits while A is still open.
        async with db.transaction() as qb, events.take_stream_ordering(qb) as pos_b:
            assert pos_b > pos_a
        assert await events.current_position() == start
        # The row lock is gone: B did not wait for A to commit.
    assert await events.current_position() == pos_b
    await events.wait_published(pos_b)


async def test_concurrent_sends_in_many_rooms_all_reach_an_incremental_sync(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        rooms = [await create_room(api, alice) for _ in range(8)]
        before = await sync(api, alice)

        async def send(room_id: str, n: int) -> str:
            r = await api.put(
                f"/rooms/{room_id}/send/m.room.message/t{n}",
                {"msgtype": "m.text", "body": f"m{n}"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
            event_id: str = r.body["event_id"]
            return event_id

        sent = await asyncio.gather(*(send(rooms[n % 8], n) for n in range(32)))
        after = await sync(api, alice, before["next_batch"])
        seen = {
            e["event_id"]
            for room in after["rooms"]["join"].values()
            for e in room["timeline"]["events"]
        }
        assert set(sent) <= seen
        # Every send returned only once readers could see it: nothing is left above.
        again = await sync(api, alice, after["next_batch"])
        assert not again["rooms"]["join"]
    events = server.hs.rooms_area.rooms.events
    newest = await server.hs.db.fetchval("SELECT MAX(stream_ordering) FROM events")
    assert await events.current_position() == newest
