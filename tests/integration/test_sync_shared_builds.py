"""Identical /sync requests in flight share one build (sync/shared.py; issue 15: a
client's retry must not double the work of a woken sync), and each still gets its
answer: also when the other waiter goes away first."""

from __future__ import annotations

import asyncio

from homeserver.app import HomeServer
from tests.integration.sync_support import LONG_POLL_MS, TwoInARoom, long_poll, parked_long_poll
from tests.integration.test_rooms_membership import send_text


def listeners(hs: HomeServer, user_id: str) -> int:
    return len(hs.sync_area.sync.notifier._listeners.get(user_id, ()))


async def test_identical_long_polls_share_one_build(two_in_a_room: TwoInARoom) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    builder = hs.sync_area.sync
    since = await t.next_batch(bob)

    first = await parked_long_poll(hs, bob, since)
    retry = asyncio.create_task(long_poll(hs, bob, since, LONG_POLL_MS))
    other = asyncio.create_task(long_poll(hs, bob, since, LONG_POLL_MS - 1))
    for _ in range(200):  # bounded: until the third request parks beside the first
        if listeners(hs, bob.user_id) == 2:
            break
        await asyncio.sleep(0.005)
    # The retry waits on the first's build; a different timeout builds its own.
    assert listeners(hs, bob.user_id) == 2
    assert builder._shared.in_flight() == 2

    sent = await send_text(api, alice, room, "once", "s1")
    (a, _), (b, _), (c, _) = await asyncio.wait_for(
        asyncio.gather(first, retry, other), LONG_POLL_MS / 1000
    )
    assert a == b
    for body in (a, c):
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent]
    assert builder._shared.in_flight() == 0


async def test_a_waiter_going_away_leaves_the_other_its_answer(
    two_in_a_room: TwoInARoom,
) -> None:
    t = two_in_a_room
    hs, api, alice, bob, room = t.hs, t.api, t.alice, t.bob, t.room
    builder = hs.sync_area.sync
    since = await t.next_batch(bob)

    first = await parked_long_poll(hs, bob, since)
    retry = asyncio.create_task(long_poll(hs, bob, since, LONG_POLL_MS))
    for _ in range(200):  # bounded: until the retry waits on the first's build
        if sum(s.waiters for s in builder._shared._inflight.values()) == 2:
            break
        await asyncio.sleep(0.005)
    assert builder._shared.in_flight() == 1
    first.cancel()
    sent = await send_text(api, alice, room, "still here", "s2")
    body, _ = await asyncio.wait_for(retry, LONG_POLL_MS / 1000)
    events = body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [sent]

    # The last waiter going away ends the build and its wait.
    lone = await parked_long_poll(hs, bob, body["next_batch"])
    lone.cancel()
    for _ in range(200):
        if builder._shared.in_flight() == 0 and listeners(hs, bob.user_id) == 0:
            break
        await asyncio.sleep(0.005)
    assert builder._shared.in_flight() == 0
    assert listeners(hs, bob.user_id) == 0
