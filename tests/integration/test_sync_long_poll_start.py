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
from typing import Any

from homeserver.app import HomeServer
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncRequest
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_peek import world_readable_room
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_quiet_streams import count
from tests.integration.test_sync_sections import shared_room

LONG_POLL_MS = 60_000
# Read once by every incremental build: the user's memberships (sync/store.py).
BUILD = "SELECT 0 AS part, room_nid"
PARK_CHECKS = 2_000


async def long_poll(
    hs: HomeServer, user: User, since: str, timeout_ms: int
) -> tuple[dict[str, Any], StatementCounter]:
    found = await hs.accounts.store.get_user(user.user_id)
    assert found is not None
    req = SyncRequest(
        user_id=user.user_id,
        device_id=user.device_id,
        user_nid=found.user_nid,
        since=StreamToken.parse(since, "since"),
        timeout_ms=timeout_ms,
    )
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return body, counter


async def parked(hs: HomeServer, user_id: str, poll: asyncio.Task[Any]) -> None:
    """Until the long-poll is registered with the notifier (bounded)."""
    notifier = hs.sync_area.sync.notifier
    for _ in range(PARK_CHECKS):
        if user_id in notifier._listeners or poll.done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the long-poll never parked")


async def test_woken_long_poll_builds_once(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room = await shared_room(api, alice, bob)
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]

        poll = asyncio.create_task(long_poll(hs, bob, since, LONG_POLL_MS))
        await parked(hs, bob.user_id, poll)
        sent = await send_text(api, alice, room, "wake up", "w1")
        body, counter = await asyncio.wait_for(poll, LONG_POLL_MS / 1000)

        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent]
        assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
        # One build: the user's memberships are read once, not once for an empty
        # answer before the wait and again after the wake-up.
        assert count(counter, BUILD) == 1
        again = await api.get(
            "/sync", token=bob.access_token, params={"since": since, "timeout": "0"}
        )
        assert again.status == 200, again.body
        assert again.body["next_batch"] == body["next_batch"]
        immediate = again.body["rooms"]["join"][room]["timeline"]
        assert [e["event_id"] for e in immediate["events"]] == [sent]
        assert immediate["limited"] == body["rooms"]["join"][room]["timeline"]["limited"]


async def test_timed_out_long_poll_answers_as_an_immediate_sync(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
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


async def test_undelivered_peek_answers_without_waiting(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room = await world_readable_room(api, alice, preset="public_chat")
        await send_text(api, alice, room, "history", "h1")
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
        r = await api.post(f"/peek/{room}", {}, token=bob.access_token)
        assert r.status == 200, r.body

        # No stream moved since the token, yet the new peek is news: answered at once
        # (a wait would sit out the whole long-poll).
        body, _ = await asyncio.wait_for(
            long_poll(hs, bob, since, LONG_POLL_MS), LONG_POLL_MS / 1000 / 2
        )
        timeline = body["rooms"]["peek"][room]["timeline"]["events"]
        assert "history" in [e["content"].get("body") for e in timeline]
