"""Unread counts read with a sync's heads (sync/store.py, ``_PART_COUNTS``): an
incremental or woken /sync whose snapshot shows the push cursor at its events head takes
its rooms' counts from that one statement (no counts statement, no wait for the
evaluator), and they are the same numbers as the counts statement gives: after the read
receipt, own and shared rows, highlights. A snapshot with the cursor behind (the
evaluator has not committed yet) falls back to the counts statement, which waits for it,
and a room in the answer without news (a receipt moved) is counted by it too."""

from __future__ import annotations

import asyncio

from homeserver.app import HomeServer
from tests.integration.sync_support import TwoInARoom, count, woken
from tests.integration.test_push_background import counts, mention
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_statement_counts import counted_sync

COUNTS_STATEMENT = "SELECT room_nid, thread_id, SUM(notify)"


async def exact(hs: HomeServer, user_id: str, room_id: str) -> dict[str, int]:
    """The counts statement's answer for one room (``NotificationService``)."""
    room = await hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    found = await hs.sync_area.notifications.unread_counts(user_id, [room], False)
    c = found[room_id].main
    return {"notification_count": c.notifications, "highlight_count": c.highlights}


async def test_counts_come_with_the_heads_and_match_the_counts_statement(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    since = await t.next_batch(bob)
    await send_text(api, alice, room, "zero", "c0")
    body, counter = await counted_sync(hs, bob, since)
    assert counter.total == 1, counter.by_sql  # heads, memberships, events and counts
    assert counts(body, room) == {"notification_count": 1, "highlight_count": 0}
    since = body["next_batch"]
    first = await send_text(api, alice, room, "one", "c1")
    await send_text(api, alice, room, "two", "c2")
    r = await api.post(f"/rooms/{room}/receipt/m.read/{first}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await mention(api, alice, room, bob, "c3")
    await send_text(api, bob, room, "bob's own", "c4")
    body, counter = await counted_sync(hs, bob, since)
    assert count(counter, COUNTS_STATEMENT) == 0, counter.by_sql
    # After bob's receipt: "two" and the mention (a highlight); his own message not.
    assert counts(body, room) == {"notification_count": 2, "highlight_count": 1}
    assert counts(body, room) == await exact(hs, bob.user_id, room)

    # Woken: the same, one statement before waiting and one after.
    since = body["next_batch"]
    body, counter, _ = await woken(
        hs, bob, since, lambda: send_text(api, alice, room, "three", "c5")
    )
    assert counter.total == 2, counter.by_sql
    assert count(counter, COUNTS_STATEMENT) == 0
    assert counts(body, room) == {"notification_count": 3, "highlight_count": 1}
    assert counts(body, room) == await exact(hs, bob.user_id, room)

    # A room with news and nothing unread: zero, from the same statement.
    r = await api.post(
        f"/rooms/{room}/receipt/m.read/{_last(body, room)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    since = body["next_batch"]
    await send_text(api, bob, room, "only mine", "c6")
    body, counter = await counted_sync(hs, bob, since)
    assert counts(body, room) == {"notification_count": 0, "highlight_count": 0}
    assert count(counter, COUNTS_STATEMENT) == 0


async def test_a_cursor_behind_the_head_falls_back_to_the_counts_statement(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    since = await t.next_batch(bob)
    evaluator = hs.sync_area.push_evaluator
    await evaluator.stop()  # the cursor stays behind what is sent now
    await send_text(api, alice, room, "not evaluated yet", "f1")
    notifications = hs.sync_area.notifications
    waiting = asyncio.Event()

    async def caught_up(upto: int) -> bool:
        waiting.set()
        return await evaluator.caught_up(upto)

    notifications.caught_up = caught_up
    try:
        syncing = asyncio.ensure_future(counted_sync(hs, bob, since))
        await asyncio.wait_for(waiting.wait(), 10)  # its counts wait for the evaluator
        assert not syncing.done()
        hs.background.append(evaluator.start())
        body, counter = await syncing
    finally:
        notifications.caught_up = evaluator.caught_up
    body, counter = await syncing
    assert count(counter, COUNTS_STATEMENT) == 1, counter.by_sql
    assert counts(body, room) == {"notification_count": 1, "highlight_count": 0}
    assert counts(body, room) == await exact(hs, bob.user_id, room)


async def test_a_room_without_news_in_the_answer_is_counted_by_the_statement(
    two_in_a_room: TwoInARoom,
) -> None:
    """A read receipt puts a room in the answer (ephemeral) with no new event: its
    counts were not read with the heads, and the counts statement gives them."""
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    one = await send_text(api, alice, room, "one", "r1")
    await send_text(api, alice, room, "two", "r2")
    since = await t.next_batch(bob)
    r = await api.post(f"/rooms/{room}/receipt/m.read/{one}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    body, counter = await counted_sync(hs, bob, since)
    assert count(counter, COUNTS_STATEMENT) == 1, counter.by_sql
    assert counts(body, room) == {"notification_count": 1, "highlight_count": 0}


def _last(body: dict[str, object], room: str) -> str:
    rooms = body["rooms"]
    assert isinstance(rooms, dict)
    events = rooms["join"][room]["timeline"]["events"]
    return str(events[-1]["event_id"])
