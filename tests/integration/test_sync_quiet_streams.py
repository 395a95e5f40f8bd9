"""An incremental /sync skips the reads of streams that cannot have moved since the
token, and still answers the same (issue 15: /sync is bound by per-request cost).

Counts, not timings: which statements one sync issues, with ``count_statements()``.
Each skip is paired with the answer it must not change: the message, the typing
notification, the key counts, and an ignored user's message in a newly peeked room
(whose history is built although no event came after the token).
"""

from __future__ import annotations

from tests.integration.sync_support import TwoInARoom, TwoUsers, count
from tests.integration.test_peek import world_readable_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_statement_counts import counted_sync


async def test_incremental_sync_reads_only_what_moved(two_in_a_room: TwoInARoom) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    first, _ = await counted_sync(hs, bob)

    await send_text(api, alice, room, "news", "t1")
    body, counter = await counted_sync(hs, bob, first["next_batch"])
    events = body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["news"]
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == []
    assert body["device_lists"] == {"changed": [], "left": []}
    assert count(counter, "FROM room_peeks") == 1  # read once per request
    assert count(counter, "e2e_one_time_keys") == 1  # with the fallback keys
    assert count(counter, "e2e_fallback_keys") == 1
    # No device list and no membership moved: who shares a room is not asked.
    assert count(counter, "JOIN room_memberships other") == 0
    # No to-device message was ever sent: the inbox is not read.
    assert count(counter, "FROM e2e_to_device_inbox") == 0

    # Only typing moved: no timeline, membership-change or ignored-list read.
    r = await api.put(
        f"/rooms/{room}/typing/{alice.user_id}",
        {"typing": True, "timeout": 30000},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    typed, counter = await counted_sync(hs, bob, body["next_batch"])
    ephemeral = typed["rooms"]["join"][room]["ephemeral"]["events"]
    assert ephemeral == [{"type": "m.typing", "content": {"user_ids": [alice.user_id]}}]
    assert typed["rooms"]["join"][room]["timeline"]["events"] == []
    assert count(counter, "FROM events") == 0
    assert count(counter, "FROM room_memberships") == 1  # the user's joined rooms
    assert count(counter, "m.ignored_user_list") + count(counter, "FROM account_data") == 0


async def test_new_peek_hides_ignored_senders_without_new_events(alice_and_bob: TwoUsers) -> None:
    t = alice_and_bob
    hs, api, alice, bob = t.hs, t.api, t.alice, t.bob
    carol = await api.register("carol")
    room = await world_readable_room(api, alice, preset="public_chat")
    r = await api.post(f"/rooms/{room}/join", {}, token=carol.access_token)
    assert r.status == 200, r.body
    await send_text(api, carol, room, "from carol", "c1")
    await send_text(api, alice, room, "from alice", "a1")
    r = await api.put(
        f"/user/{bob.user_id}/account_data/m.ignored_user_list",
        {"ignored_users": {carol.user_id: {}}},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    first, _ = await counted_sync(hs, bob)
    r = await api.post(f"/peek/{room}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    # No event since the token: the peek's history is still built, without carol.
    body, _ = await counted_sync(hs, bob, first["next_batch"])
    timeline = body["rooms"]["peek"][room]["timeline"]["events"]
    bodies = [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"]
    assert bodies == ["from alice"]
