"""Stream positions under concurrent writes into many rooms (``rooms.late_positions``).

On PostgreSQL a persisting transaction takes its positions last, just before its
COMMIT, so the one row every room's writer needs is held for one statement and the
COMMIT instead of the whole transaction. Checked here on both engines: many rooms
sending, joining and being created at once still give every event its own position,
gap-free, membership rows the position of their event, and a /sync that sees them all
in stream order; on PostgreSQL, that the row is free while the rest is written and
that a hook's after-commit callback gets the committed position."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.app import RunningServer
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Queries
from tests.conftest import ENGINE
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_send_batches import rooms_of

ROOMS = 6
PER_ROOM = 5


async def test_many_rooms_at_once_positions_gap_free_and_synced(
    server: RunningServer, api: Api
) -> None:
    owners = [await api.register(f"o{i}") for i in range(ROOMS)]
    joiners = [await api.register(f"j{i}") for i in range(ROOMS)]
    watcher = await api.register("watcher")
    room_ids = [await create_room(api, o, preset="public_chat") for o in owners]
    for room_id in room_ids:
        r = await api.post(f"/join/{room_id}", {}, token=watcher.access_token)
        assert r.status == 200, r.body
    r = await api.get("/sync", token=watcher.access_token)
    assert r.status == 200, r.body
    since = r.body["next_batch"]
    db = server.hs.db
    start = int(await db.fetchval("SELECT MAX(stream_ordering) FROM events"))

    async def busy(i: int) -> None:
        """Sends into room i, a join into it and a new room, all at once with the others."""

        async def sends() -> None:
            for n in range(PER_ROOM):
                r = await api.put(
                    f"/rooms/{room_ids[i]}/send/m.room.message/t{n}",
                    {"msgtype": "m.text", "body": f"{i}.{n}"},
                    token=owners[i].access_token,
                )
                assert r.status == 200, r.body

        async def join() -> None:
            r = await api.post(f"/join/{room_ids[i]}", {}, token=joiners[i].access_token)
            assert r.status == 200, r.body

        await asyncio.gather(sends(), join(), create_room(api, joiners[i]))

    await asyncio.gather(*(busy(i) for i in range(ROOMS)))

    # Every position after the start is taken by exactly one event: no gap, no twin.
    rows = await db.fetchall(
        "SELECT stream_ordering FROM events WHERE stream_ordering > $1 ORDER BY 1", start
    )
    positions = [int(r["stream_ordering"]) for r in rows]
    head = int(
        await db.fetchval("SELECT position FROM stream_positions WHERE stream_name = 'events'")
    )
    assert positions == list(range(start + 1, head + 1))
    # A new room's 6+ events and each room's sends and join.
    assert len(positions) >= ROOMS * (PER_ROOM + 1 + 5)
    # A membership row has the position of the event that set it, never a placeholder.
    stale = await db.fetchall(
        "SELECT m.user_id FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid"
        " WHERE m.stream_ordering <> e.stream_ordering"
    )
    assert stale == []
    # The watcher's incremental /sync sees every room's new events, in stream order.
    r = await api.get(
        "/sync",
        token=watcher.access_token,
        params={"since": since, "filter": '{"room": {"timeline": {"limit": 50}}}'},
    )
    assert r.status == 200, r.body
    joined = r.body["rooms"]["join"]
    for i, room_id in enumerate(room_ids):
        timeline = joined[room_id]["timeline"]
        assert not timeline.get("limited"), timeline
        events = timeline["events"]
        bodies = [e["content"]["body"] for e in events if e["type"] == "m.room.message"]
        assert bodies == [f"{i}.{n}" for n in range(PER_ROOM)]
        assert any(
            e["type"] == "m.room.member" and e["state_key"] == joiners[i].user_id for e in events
        )
        ids = [e["event_id"] for e in events]
        stored = await rooms_of(server).events.by_ids(ids)
        order = [stored[x].stream_ordering for x in ids]
        assert order == sorted(order) and None not in order


@pytest.mark.skipif(ENGINE != "postgres", reason="positions are taken last on PostgreSQL only")
async def test_position_row_free_until_the_end_and_callbacks_get_it(
    server: RunningServer, api: Api
) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    db = server.hs.db
    seen: list[tuple[int | None, bool]] = []
    committed: list[StoredEvent] = []

    async def probe(q: Queries, stored: StoredEvent, plan: PersistPlan) -> AfterCommit | None:
        # Another connection may lock the row now: this transaction does not hold it yet.
        free = True
        try:
            async with db.transaction() as other:
                await other.execute(
                    "SELECT position FROM stream_positions WHERE stream_name = 'events'"
                    " FOR UPDATE NOWAIT"
                )
        except Exception as e:  # asyncpg's LockNotAvailableError
            assert "lock" in str(e).lower(), e
            free = False
        seen.append((stored.stream_ordering, free))
        return committed.append

    rooms = rooms_of(server)
    rooms.persister.txn_hooks.append(probe)
    try:
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.message/t1",
            {"msgtype": "m.text", "body": "hello"},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        other_room = await create_room(api, alice)  # a chain of several events
    finally:
        rooms.persister.txn_hooks.remove(probe)
    assert seen and all(free for _, free in seen), seen
    assert all(so is None for so, _ in seen), seen  # not taken yet
    by_id: dict[str, Any] = {s.event.event_id: s for s in committed}
    event_id = r.body["event_id"]
    row = await db.fetchval("SELECT stream_ordering FROM events WHERE event_id = $1", event_id)
    assert by_id[event_id].stream_ordering == int(row)
    created = [s for s in committed if s.event.room_id == other_room]
    assert len(created) >= 5
    got = [s.stream_ordering for s in created]
    assert got == list(range(got[0], got[0] + len(got)))  # consecutive, in chain order
