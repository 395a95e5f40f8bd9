"""A long-poll whose token is at the head of every stream waits before it builds
(issue 15: 20 long-polls woken at once each built an empty answer first, then the
real one; the empty build was half of the fan-out's CPU).

Counts, not timings: which statements one long-poll issues, with ``count_statements()``.
Each skip is paired with the answer it must not change: the woken answer carries the
message, a timed-out one is the same as an immediate answer at that token, and a device
with a peek not yet delivered gets it at once (no stream moves for that).
"""

from __future__ import annotations

import asyncio

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.sync_support import (
    LONG_POLL_MS,
    TwoInARoom,
    TwoUsers,
    count,
    long_poll,
    woken,
)
from tests.integration.test_peek import world_readable_room
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

# Read once by every incremental build: the user's memberships (sync/store.py).
BUILD = "FROM room_memberships WHERE user_id = $1 AND membership = 'join'"


async def test_woken_long_poll_builds_once(two_in_a_room: TwoInARoom) -> None:
    t = two_in_a_room
    since = await t.next_batch(t.bob)
    body, counter, sent = await woken(
        t.hs, t.bob, since, lambda: send_text(t.api, t.alice, t.room, "wake up", "w1")
    )

    events = body["rooms"]["join"][t.room]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [sent]
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    # One build: the user's memberships are read once, not once for an empty
    # answer before the wait and again after the wake-up.
    assert count(counter, BUILD) == 1
    again = await t.api.get(
        "/sync", token=t.bob.access_token, params={"since": since, "timeout": "0"}
    )
    assert again.status == 200, again.body
    assert again.body["next_batch"] == body["next_batch"]
    immediate = again.body["rooms"]["join"][t.room]["timeline"]
    assert [e["event_id"] for e in immediate["events"]] == [sent]
    assert immediate["limited"] == body["rooms"]["join"][t.room]["timeline"]["limited"]


async def test_timed_out_long_poll_answers_as_an_immediate_sync(
    server: RunningServer, api: Api
) -> None:
    hs = server.hs
    alice = await api.register("alice")
    room = await create_room(api, alice, preset="public_chat")
    await send_text(api, alice, room, "old", "o1")
    since = (await api.get("/sync", token=alice.access_token)).body["next_batch"]

    body, counter = await long_poll(hs, alice, since, 50)
    assert count(counter, BUILD) == 1  # built once, at the timeout
    now = await api.get("/sync", token=alice.access_token, params={"since": since})
    assert now.status == 200, now.body
    assert body == now.body
    assert body["next_batch"] == since
    assert body["rooms"]["join"] == {}


async def test_undelivered_peek_answers_without_waiting(alice_and_bob: TwoUsers) -> None:
    t = alice_and_bob
    hs, api, alice, bob = t.hs, t.api, t.alice, t.bob
    room = await world_readable_room(api, alice, preset="public_chat")
    await send_text(api, alice, room, "history", "h1")
    since = await t.next_batch(bob)
    r = await api.post(f"/peek/{room}", {}, token=bob.access_token)
    assert r.status == 200, r.body

    # No stream moved since the token, yet the new peek is news: answered at once
    # (a wait would sit out the whole long-poll).
    body, _ = await asyncio.wait_for(
        long_poll(hs, bob, since, LONG_POLL_MS), LONG_POLL_MS / 1000 / 2
    )
    timeline = body["rooms"]["peek"][room]["timeline"]["events"]
    assert "history" in [e["content"].get("body") for e in timeline]
