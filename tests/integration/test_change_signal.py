"""The seam between rooms and sync: the room service publishes "stream moved" to a
``ChangeSignal`` and knows nothing else about who listens.

A second implementation (here one that records what it is told and passes it on to
the server's own notifier, as a cross-process signal would) plugs in without the room
service changing, and /sync still sees the event (the wake-up itself is
tests/integration/test_sync_wakeup.py's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from homeserver.app import RunningServer
from homeserver.streams.signal import EVENTS, ChangeSignal, SignalFanout
from homeserver.sync.notifier import Notifier
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


class Relay:
    """A ChangeSignal that remembers each signal and forwards it to another one."""

    def __init__(self, inner: ChangeSignal) -> None:
        self.inner = inner
        self.seen: list[tuple[str, int, frozenset[str]]] = []

    def changed(self, stream: str, position: int, users: Iterable[str]) -> None:
        users = list(users)
        self.seen.append((stream, position, frozenset(users)))
        self.inner.changed(stream, position, users)


async def test_room_events_reach_whatever_signal_is_connected(
    server: RunningServer, api: Api
) -> None:
    rooms = server.hs.rooms_area.rooms
    # In one process: a fan-out to the sync notifier (and any app-service senders).
    assert isinstance(rooms.signal, SignalFanout)
    assert any(isinstance(t, Notifier) for t in rooms.signal.targets)
    relay = Relay(rooms.signal)
    rooms.signal = relay

    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
    relay.seen.clear()

    async def bob_sees(event_id: str) -> None:
        nonlocal since
        for _ in range(20):  # an answer may come early with other news; bounded
            r = await api.get(
                "/sync", token=bob.access_token, params={"since": since, "timeout": "60000"}
            )
            assert r.status == 200, r.body
            since = r.body["next_batch"]
            joined = r.body["rooms"]["join"].get(room_id, {})
            if event_id in [e["event_id"] for e in joined.get("timeline", {}).get("events", [])]:
                return
        raise AssertionError("bob's /sync never showed the event")

    event_id = await send_text(api, alice, room_id, "hello", "t1")
    await asyncio.wait_for(bob_sees(event_id), timeout=50)

    stored = await rooms.events.by_id(event_id)
    assert stored is not None and stored.stream_ordering is not None
    # The room id too: a non-member peeking with /events?room_id= listens on it.
    expected = frozenset({alice.user_id, bob.user_id, room_id})
    assert relay.seen == [(EVENTS, stored.stream_ordering, expected)]
