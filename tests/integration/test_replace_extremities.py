"""``EventStore.replace_extremities`` takes one statement on PostgreSQL and two on SQLite
whatever the number of prev events (issue 15: fewer round trips while the room is held);
the extremities it leaves must be exactly the old ones less the prevs, plus the event."""

from __future__ import annotations

from homeserver.storage.database import count_statements
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def test_replace_extremities_drops_every_prev_and_keeps_the_rest(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    events = hs.rooms_area.rooms.events
    db = events.db
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
        ids = [await send_text(api, alice, room_id, f"m{i}", f"t{i}") for i in range(4)]
    room = await hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    nids = [(await events.by_id(e)).event_nid for e in ids]  # type: ignore[union-attr]
    a, b, c, d = nids

    async def extremities() -> set[int]:
        rows = await db.fetchall(
            "SELECT event_nid FROM forward_extremities WHERE room_nid = $1", room.room_nid
        )
        return {int(r["event_nid"]) for r in rows}

    async with db.transaction() as q:  # a forked room: three extremities
        await q.execute("DELETE FROM forward_extremities WHERE room_nid = $1", room.room_nid)
        for nid in (a, b, c):
            await q.execute(
                "INSERT INTO forward_extremities (room_nid, event_nid) VALUES ($1, $2)",
                room.room_nid,
                nid,
            )
    with count_statements() as counter:
        async with db.transaction() as q:
            await events.replace_extremities(q, room.room_nid, [a, b], d)
    assert counter.total == (1 if db.engine == "postgres" else 2), counter.by_sql
    assert await extremities() == {c, d}

    async with db.transaction() as q:  # no prev events (a create event): only the insert
        await q.execute("DELETE FROM forward_extremities WHERE room_nid = $1", room.room_nid)
        await events.replace_extremities(q, room.room_nid, [], a)
    assert await extremities() == {a}
