"""A woken incremental /sync costs a handful of statements (issue 15 #3, #5), and every
read it folded into another or skipped still sees a change.

Counts, not timings: ``count_statements()`` around ``SyncBuilder.sync`` of a long-poll.
What was cut, each paired with a test that the answer still moves:

- the device's peeks and the user's presence are read with the stream heads (one
  statement): a peek started during the long-poll, or a presence that differs from
  ``set_presence``, still counts;
- once woken, the heads and the memberships below are one statement (the range ends
  at the events head read with them);
- the user's joined rooms, their own membership changes, everyone's moves in those
  rooms, the rooms with new events and their newest events (a window per room) are
  one statement: a member who joins or leaves still reaches ``device_lists``, a burst
  longer than the timeline limit is still ``limited``;
- keys-only state loads are cached per (group, key): a group changed in place is
  read again;
- whether a relation points at each new event is read with them, and bundles are read
  only for those (tests/integration/test_sync_childless_events.py);
- the newest partial-state completion is read with the heads, and the rooms made whole
  only when it is past the token (tests/federation/test_partial_state_sync.py).
"""

from __future__ import annotations

from functools import partial

import pytest

from homeserver.app import RunningServer
from homeserver.push.notifications import ONE_STATEMENT_ROOMS
from homeserver.storage.database import count_statements
from tests.helpers import Api
from tests.integration.e2ee_device import Device
from tests.integration.sync_support import (
    TwoInARoom,
    TwoUsers,
    count,
    shared_room,
    woken,
)
from tests.integration.test_peek import world_readable_room
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_statement_counts import counted_sync

# Heads (with peeks, presence, key counts and the newest partial-state completion)
# before waiting; once woken, the heads again with the memberships, the new events
# (and whether a relation points at each) and the unread counts (with the read
# receipts and the push cursor: test_sync_counts_with_heads.py). Was 16 at 5f76781,
# 7 at 34949b8 (the second heads, the new events, the bundled aggregations and the
# partial-state rooms made whole since the token had a statement each), 3 at d89875d
# (the counts had one).
WOKEN_SYNC_STATEMENTS = 2
# An incremental sync that does not wait: the heads with the memberships, the new
# events and the unread counts (6 at 34949b8, 2 at d89875d).
INCREMENTAL_SYNC_STATEMENTS = 1


async def test_woken_sync_with_one_message_costs_at_most_n_statements(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    since = await t.next_batch(t.bob)
    for i in range(3):  # the first rounds warm the caches the later ones rely on
        body, counter, sent = await woken(
            t.hs,
            t.bob,
            since,
            partial(send_text, t.api, t.alice, t.room, f"wake {i}", f"w{i}"),
        )
        events = body["rooms"]["join"][t.room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent]
        since = body["next_batch"]
    assert counter.total <= WOKEN_SYNC_STATEMENTS, counter.by_sql
    # Folded into the heads: no statement of their own.
    assert count(counter, "FROM room_peeks") == 2  # in the two heads statements
    assert count(counter, "FROM users u LEFT JOIN presence") == 0
    assert count(counter, "SELECT DISTINCT room_nid FROM events") == 0
    assert count(counter, "WITH RECURSIVE chain") == 0  # the state keys are cached
    # The woken build's heads, memberships and new events are one statement.
    assert count(counter, "FROM room_memberships") == 1
    assert count(counter, "AS own_presence") == 2
    assert count(counter, "ROW_NUMBER() OVER") == 1
    # No relation points at the new event: no bundle read (test_sync_childless_events).
    assert count(counter, "WHERE r.rel_type IN (") == 0
    # No partial-state room was made whole: only the max in the heads.
    assert count(counter, "FROM partial_state_completed WHERE") == 0


async def test_incremental_sync_that_does_not_wait_costs_n_statements(
    two_in_a_room: TwoInARoom,
) -> None:
    """``timeout=0``: the heads, memberships and new events in one statement, then the
    unread counts."""
    t = two_in_a_room
    since = await t.next_batch(t.bob)
    for i in range(3):  # the first rounds warm the caches
        sent = await send_text(t.api, t.alice, t.room, f"now {i}", f"n{i}")
        body, counter = await counted_sync(t.hs, t.bob, since)
        events = body["rooms"]["join"][t.room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent]
        since = body["next_batch"]
    assert counter.total <= INCREMENTAL_SYNC_STATEMENTS, counter.by_sql
    assert count(counter, "FROM room_memberships") == 1
    assert count(counter, "AS own_presence") == 1
    # Nothing new: the same one statement answers it, and nothing more is read.
    body, counter = await counted_sync(t.hs, t.bob, since)
    assert body["rooms"]["join"] == {}
    assert counter.total == 1, counter.by_sql


async def test_presence_that_differs_from_set_presence_is_still_written(
    server: RunningServer, api: Api
) -> None:
    alice = await api.register("alice")
    r = await api.get("/sync", token=alice.access_token)
    assert r.status == 200, r.body
    r = await api.put(
        f"/presence/{alice.user_id}/status",
        {"presence": "unavailable"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    # set_presence=offline leaves the state as it is (spec).
    quiet = {"set_presence": "offline"}
    since = (await api.get("/sync", token=alice.access_token, params=quiet)).body["next_batch"]
    # The default set_presence (online) differs from the stored state: written, and
    # the user's own change is in this very answer.
    r = await api.get("/sync", token=alice.access_token, params={"since": since})
    assert r.status == 200, r.body
    mine = [e for e in r.body["presence"]["events"] if e["sender"] == alice.user_id]
    assert mine and mine[-1]["content"]["presence"] == "online", r.body
    status = await api.get(f"/presence/{alice.user_id}/status", token=alice.access_token)
    assert status.body["presence"] == "online"
    # The same state again: nothing written, the presence stream does not move.
    again = await api.get("/sync", token=alice.access_token, params={"since": r.body["next_batch"]})
    assert again.body["presence"]["events"] == []


async def test_peek_started_during_a_long_poll_is_answered_and_followed(
    alice_and_bob: TwoUsers,
) -> None:
    t = alice_and_bob
    hs, api, alice, bob = t.hs, t.api, t.alice, t.bob
    room = await world_readable_room(api, alice, preset="public_chat")
    await send_text(api, alice, room, "before the peek", "p0")
    since = await t.next_batch(bob)

    body, _, r = await woken(
        hs, bob, since, lambda: api.post(f"/peek/{room}", {}, token=bob.access_token)
    )
    assert r.status == 200, r.body
    timeline = body["rooms"]["peek"][room]["timeline"]["events"]
    assert "before the peek" in [e["content"].get("body") for e in timeline]

    # The next long-poll reads the peek with the heads and listens on the room:
    # a message there wakes it (bob is no member, so only the room id can).
    body, _, sent = await woken(
        hs,
        bob,
        body["next_batch"],
        lambda: send_text(api, alice, room, "after the peek", "p1"),
        listening_on=room,
    )
    events = body["rooms"]["peek"][room]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [sent]


async def test_members_joining_and_leaving_still_reach_device_lists(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    api, alice, bob, room = t.api, t.alice, t.bob, t.room
    carol = await api.register("carol")
    since = await t.next_batch(bob)

    body, _, r = await woken(
        t.hs, bob, since, lambda: api.post(f"/join/{room}", {}, token=carol.access_token)
    )
    assert r.status == 200, r.body
    assert carol.user_id in body["device_lists"]["changed"], body["device_lists"]

    body, _, r = await woken(
        t.hs,
        bob,
        body["next_batch"],
        lambda: api.post(f"/rooms/{room}/leave", {}, token=carol.access_token),
    )
    assert r.status == 200, r.body
    assert carol.user_id in body["device_lists"]["left"], body["device_lists"]

    # Bob leaves: the room is under rooms.leave and alice no longer shares a room.
    since = body["next_batch"]
    r = await api.post(f"/rooms/{room}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    assert room in r.body["rooms"]["leave"], r.body
    assert alice.user_id in r.body["device_lists"]["left"], r.body["device_lists"]


async def test_a_burst_longer_than_the_limit_is_limited(two_in_a_room: TwoInARoom) -> None:
    t = two_in_a_room
    api, alice, bob, room = t.api, t.alice, t.bob, t.room
    quiet = await create_room(api, bob)
    since = await t.next_batch(bob)
    sent = [await send_text(api, alice, room, f"m{i}", f"b{i}") for i in range(4)]
    flt = '{"room": {"timeline": {"limit": 3}}}'
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    timeline = r.body["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent[1:]
    assert timeline["limited"] is True
    assert quiet not in r.body["rooms"]["join"]
    flt = '{"room": {"timeline": {"limit": 4}}}'
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    timeline = r.body["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent
    assert timeline["limited"] is False


async def test_new_events_come_from_each_joined_room_with_news_only(
    two_in_a_room: TwoInARoom,
) -> None:
    """The heads statement looks the new events up in its rooms with news only
    (``news_rooms``), not in every joined room: each room with news still gets its own
    newest events, a room joined in the range is answered, and a quiet room, a room
    the user is not in and a room they left give no timeline in ``join``."""
    t = two_in_a_room
    api, alice, bob, room = t.api, t.alice, t.bob, t.room
    quiet = await create_room(api, bob)
    other = await shared_room(api, alice, bob)
    late = await create_room(api, alice, preset="public_chat")
    gone = await shared_room(api, alice, bob)
    elsewhere = await create_room(api, alice)
    since = await t.next_batch(bob)
    burst = [await send_text(api, alice, room, f"m{i}", f"nr{i}") for i in range(4)]
    one = await send_text(api, alice, other, "one", "no")
    await send_text(api, alice, elsewhere, "not for bob", "ne")
    await send_text(api, alice, gone, "before the leave", "ng")
    assert (await api.post(f"/rooms/{gone}/leave", {}, token=bob.access_token)).status == 200
    assert (await api.post(f"/join/{late}", {}, token=bob.access_token)).status == 200
    flt = '{"room": {"timeline": {"limit": 3}}}'
    body, counter = await counted_sync(t.hs, bob, since, flt)
    join = body["rooms"]["join"]
    assert set(join) == {room, other, late}
    assert [e["event_id"] for e in join[room]["timeline"]["events"]] == burst[1:]
    assert join[room]["timeline"]["limited"] is True
    assert [e["event_id"] for e in join[other]["timeline"]["events"]] == [one]
    assert join[other]["timeline"]["limited"] is False
    assert gone in body["rooms"]["leave"]
    assert quiet not in join and elsewhere not in join
    assert count(counter, "AS own_presence") == 1  # the new events came with the heads


async def test_keys_only_state_loads_see_a_group_changed_in_place(
    server: RunningServer, api: Api
) -> None:
    hs = server.hs
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    room = await hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    state = hs.rooms_area.rooms.state
    root = int(
        await hs.db.fetchval(
            "SELECT MIN(state_group) FROM state_groups WHERE room_nid = $1", room.room_nid
        )
    )
    full = await hs.db.fetchall(
        "SELECT state_key_nid, event_nid FROM state_group_entries WHERE state_group = $1",
        root,
    )
    present, event_nid = int(full[0][0]), int(full[0][1])
    key = max(int(r[0]) for r in full) + 1_000_000  # a key no real state uses
    state.forget_cached()
    first = await state.keys_at_groups([root], [present, key])
    assert first[root] == {present: event_nid}
    # Cached: read again without a statement.
    with count_statements() as counter:
        assert await state.keys_at_groups([root], [present, key]) == first
    assert counter.total == 0
    async with hs.db.transaction() as q:
        await state.add_to_roots(q, room.room_nid, {key: event_nid})
    state.changed_in_place()
    again = await state.keys_at_groups([root], [present, key])
    assert again[root] == {present: event_nid, key: event_nid}


async def test_key_counts_read_with_the_heads_follow_uploads_and_claims(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    api, alice, bob = t.api, t.alice, t.bob
    since = await t.next_batch(bob)
    dev = Device(bob.user_id, bob.device_id)
    r = await api.post(
        "/keys/upload",
        {
            "device_keys": dev.device_keys(),
            "one_time_keys": dev.one_time_keys(2),
            "fallback_keys": dev.fallback_key(),
        },
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    # A woken long-poll answers the counts of its own build.
    body, _, _ = await woken(t.hs, bob, since, lambda: send_text(api, alice, t.room, "keys?", "k1"))
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    r = await api.post(
        "/keys/claim",
        {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api.get("/sync", token=bob.access_token, params={"since": body["next_batch"]})
    assert r.body["device_one_time_keys_count"] == {"signed_curve25519": 1}


@pytest.mark.parametrize("other_rooms", [0, ONE_STATEMENT_ROOMS])
async def test_unread_counts_read_with_the_receipts_follow_each_receipt(
    two_in_a_room: TwoInARoom, other_rooms: int
) -> None:
    """Both paths: receipts and counts in one statement (a few rooms), and the receipts
    read first (more rooms than ``ONE_STATEMENT_ROOMS``, as in an initial sync)."""
    t = two_in_a_room
    api, alice, bob, room = t.api, t.alice, t.bob, t.room
    for i in range(other_rooms):
        other = await shared_room(api, alice, bob)
        await send_text(api, alice, other, "elsewhere", f"o{i}")
    sent = [await send_text(api, alice, room, f"n{i}", f"u{i}") for i in range(3)]

    async def unread() -> int:
        r = await api.get("/sync", token=bob.access_token)
        count: int = r.body["rooms"]["join"][room]["unread_notifications"]["notification_count"]
        return count

    assert await unread() == 3
    for event_id, thread, left in ((sent[0], None, 2), (sent[1], "main", 1)):
        body = {} if thread is None else {"thread_id": thread}
        r = await api.post(f"/rooms/{room}/receipt/m.read/{event_id}", body, token=bob.access_token)
        assert r.status == 200, r.body
        assert await unread() == left
    # An older unthreaded receipt does not undo the newer main one.
    r = await api.post(
        f"/rooms/{room}/receipt/m.read.private/{sent[0]}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    assert await unread() == 1
