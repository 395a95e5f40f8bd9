"""An initial /sync reads its joined rooms' newest events, whether a relation points at
each, and their unread counts with its heads and rooms in one statement
(``SyncStore.sync_heads_and_rooms``): the timeline read, the bundled-aggregation read and
the counts read were three round trips more on PostgreSQL (issue 15 #5: a lazy-loaded
initial sync of a member of a big room). Each room's rows are a range of its
``(room_nid, stream_ordering)`` index, whatever the other rooms hold (the plan is
checked: over the whole stream's index, a quiet room's read would cover every event of
every room since its own newest)."""

from __future__ import annotations

import json

from homeserver.storage.database import count_statements, to_sqlite_sql
from tests.integration.sync_support import TwoInARoom, TwoUsers, count, shared_room
from tests.integration.test_push_background import counts, mention
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_rooms_relations_search import send
from tests.integration.test_sync_childless_events import BUNDLES_SQL, text
from tests.integration.test_sync_counts_with_heads import COUNTS_STATEMENT, exact
from tests.integration.test_sync_statement_counts import counted_sync

LIMIT = 3
FILTER = json.dumps({"room": {"timeline": {"limit": LIMIT}}})
# ``EventsStore.latest_in_rooms``: the timeline read of its own.
LATEST_SQL = "SELECT * FROM (SELECT room_nid, event_nid, stream_ordering FROM events"
# The user's rooms, read with the heads (``SyncStore.sync_heads_and_rooms``).
ROOMS_SQL = "membership IN ('join', 'invite', 'knock')"


async def test_initial_sync_reads_timelines_and_children_with_its_rooms(
    alice_and_bob: TwoUsers,
) -> None:
    t = alice_and_bob
    hs, api, alice, bob = t.hs, t.api, t.alice, t.bob
    busy = await shared_room(api, alice, bob)
    quiet = await shared_room(api, alice, bob)
    quiet_msg = await send(api, alice, quiet, text("quiet"), "q")
    sent = [await send(api, alice, busy, text(f"busy {i}"), f"b{i}") for i in range(6)]
    # A room bob left: not his to read (its events are not read with his rooms).
    left = await shared_room(api, alice, bob)
    assert (await api.post(f"/rooms/{left}/leave", {}, token=bob.access_token)).status == 200
    await counted_sync(hs, bob)  # the first sets bob's presence (heads read again)

    body, counter = await counted_sync(hs, bob, filter_param=FILTER)
    rooms = body["rooms"]["join"]
    assert set(rooms) == {busy, quiet}
    timeline = rooms[busy]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent[-LIMIT:]
    assert timeline["limited"] is True
    timeline = rooms[quiet]["timeline"]
    # The quiet room's newest events: bob's join and the message (its creation
    # events before them), all after the busy room's.
    assert [e["event_id"] for e in timeline["events"]][-1] == quiet_msg
    assert timeline["events"][-2]["state_key"] == bob.user_id
    assert len(timeline["events"]) == LIMIT and timeline["limited"] is True
    # Nothing relates to them: no timeline read, no bundles read of their own.
    assert count(counter, LATEST_SQL) == 0, counter.by_sql
    assert count(counter, BUNDLES_SQL) == 0, counter.by_sql

    # An edit of the busy room's newest message: its bundle is read, and served.
    edit = await send(
        api,
        alice,
        busy,
        {
            **text("* busy!"),
            "m.new_content": text("busy!"),
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent[-1]},
        },
        "e",
    )
    body, counter = await counted_sync(hs, bob, filter_param=FILTER)
    events = body["rooms"]["join"][busy]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [*sent[-2:], edit]
    assert events[1]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    assert count(counter, LATEST_SQL) == 0 and count(counter, BUNDLES_SQL) == 1

    # A timeline filtered by type is read room by room, further back, as before.
    only_members = json.dumps({"room": {"timeline": {"limit": 1, "types": ["m.room.member"]}}})
    body, counter = await counted_sync(hs, bob, filter_param=only_members)
    for room in (busy, quiet):
        (event,) = body["rooms"]["join"][room]["timeline"]["events"]
        assert event["type"] == "m.room.member" and event["state_key"] == bob.user_id


async def test_each_rooms_events_are_read_from_its_own_index_range(
    alice_and_bob: TwoUsers,
) -> None:
    t = alice_and_bob
    hs, api, alice, bob = t.hs, t.api, t.alice, t.bob
    await shared_room(api, alice, bob)  # bob's one room
    busy = await create_room(api, alice, preset="public_chat")
    for i in range(50):
        await send(api, alice, busy, text(f"busy {i}"), f"b{i}")
    record = await hs.accounts.store.get_user(bob.user_id)
    assert record is not None
    args = (bob.user_id, bob.device_id, record.user_nid, LIMIT + 1)
    with count_statements() as counter:
        _, _, newest = await hs.sync_area.sync.store.sync_heads_and_rooms(*args)
    assert newest is not None and len(newest.events) == LIMIT + 1
    (sql,) = counter.by_sql
    if hs.db.engine == "postgres":
        # Before and after statistics, and as the generic plan a prepared statement
        # settles on after its first five runs.
        for analyzed, mode in ((False, "auto"), (True, "auto"), (True, "force_generic_plan")):
            if analyzed:
                await hs.db.execute("ANALYZE events")
            async with hs.db.transaction() as q:
                await q.execute(f"SET LOCAL plan_cache_mode = {mode}")
                rows = await q.fetchall("EXPLAIN " + sql, *args)
            listed = "\n".join(str(r[0]) for r in rows)
            # A LATERAL per room: a backward scan of the room's own index range.
            assert "Index Scan Backward using events_room_stream on events e" in listed, listed
            assert "events_stream_ordering_key" not in listed, listed
        return
    plan = await hs.db.fetchall("EXPLAIN QUERY PLAN " + to_sqlite_sql(sql), *args)
    details = [str(row["detail"]) for row in plan]
    listed = "\n".join(details)
    ranged = "USING INDEX events_room_stream (room_nid=? AND stream_ordering>? AND"
    assert any(d.startswith("SEARCH e ") and ranged in d for d in details), listed
    assert not any(d.startswith(("SCAN e", "SCAN c", "SCAN events")) for d in details), listed


async def test_initial_sync_counts_come_with_its_rooms(two_in_a_room: TwoInARoom) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    await send_text(api, alice, room, "read", "c0")
    await mention(api, alice, room, bob, "c1")
    last = await send_text(api, bob, room, "bob's own", "c2")
    await send_text(api, alice, room, "unread", "c3")
    r = await api.post(f"/rooms/{room}/receipt/m.read/{last}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await mention(api, alice, room, bob, "c4")
    await counted_sync(hs, bob)  # the first sets bob's presence (heads read again)
    await hs.sync_area.push_evaluator.caught_up(await hs.rooms_area.rooms.events.current_position())

    body, counter = await counted_sync(hs, bob)
    # After bob's receipt: "unread" and the second mention (a highlight).
    assert counts(body, room) == {"notification_count": 2, "highlight_count": 1}
    assert counts(body, room) == await exact(hs, bob.user_id, room)
    assert count(counter, COUNTS_STATEMENT) == 0, counter.by_sql
    assert [sql for sql in counter.by_sql if ROOMS_SQL in sql and "event_push" in sql]

    # Per thread: not read with the rooms (nor counted there, to be thrown away); the
    # counts statements give them, and the statement count stays the same.
    by_thread = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})
    total = counter.total
    body, counter = await counted_sync(hs, bob, filter_param=by_thread)
    assert counts(body, room) == {"notification_count": 2, "highlight_count": 1}
    assert count(counter, "SUM(notify)") >= 1, counter.by_sql
    (rooms_sql,) = [sql for sql in counter.by_sql if ROOMS_SQL in sql]
    assert "event_push" not in rooms_sql and "push_evaluated" not in rooms_sql, rooms_sql
    assert counter.total == total + 2, counter.by_sql  # + read positions and counts, as before
