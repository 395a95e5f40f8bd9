"""Which events a server may read through ``/backfill`` (``federation.reads``), and
what deciding it costs: right after a server joins a big room its first request is a
backfill of the history, and judging each event used to load the room's whole state
(every member's event) and its whole member list, once per event.

Now the history visibility is read alone; ``shared`` with a member of the server
joined now settles it (one row); only otherwise are the server's own memberships at
the event read. Both outcomes are checked here, and that the events read for a
backfill do not grow with the room's members.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest

from federation.reads import RoomReads
from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, q, send_text
from tests.federation.scripted_peer import ScriptedPeer
from tests.helpers import Api

reading: ContextVar[bool] = ContextVar("reading", default=False)


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def _reads(hs: RunningServer) -> RoomReads:
    fed = hs.hs.federation
    assert fed is not None and fed.rooms is not None
    return fed.rooms.reads


async def _add_members(api: Api, room_id: str, start: int, count: int) -> None:
    for i in range(start, start + count):
        user = await api.register(f"m{i}")
        r = await api.post(f"/rooms/{q(room_id)}/join", {}, token=user.access_token)
        assert r.status == 200, r.body


async def _backfill_reading(
    hs: RunningServer, origin: str, room_id: str, from_id: str, limit: int
) -> tuple[list[str], int]:
    """The bodies a backfill gives ``origin``, and how many events it read by their
    numeric id to judge them (state events: the history visibility, memberships)."""
    events = hs.hs.rooms_area.rooms.events
    by_nids = events.by_nids
    read = 0

    async def counted_nids(nids: Iterable[int]) -> Any:
        nonlocal read
        wanted = list(nids)
        if reading.get():  # this task's reads only: background tasks read meanwhile
            read += len(wanted)
        return await by_nids(wanted)

    async def backfill() -> dict[str, Any]:
        reading.set(True)
        return await _reads(hs).backfill(origin, room_id, [from_id], limit)

    events.by_nids = counted_nids  # type: ignore[method-assign]
    try:
        answer = await asyncio.create_task(backfill())
    finally:
        events.by_nids = by_nids  # type: ignore[method-assign]
    bodies = [p["content"].get("body") for p in answer["pdus"] if p["type"] == "m.room.message"]
    return bodies, read


async def test_backfill_reads_the_same_events_at_any_room_size(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, _room = await peer_in_public_room(make_server, peer)
    await _add_members(api, room_id, 0, 3)
    for i in range(3):
        await send_text(api, alice, room_id, f"small {i}")
    last = await send_text(api, alice, room_id, "small last")
    small, read_small = await _backfill_reading(hs, peer.server_name, room_id, last, 4)
    assert small == ["small last", "small 2", "small 1", "small 0"]

    await _add_members(api, room_id, 3, 40)
    for i in range(3):
        await send_text(api, alice, room_id, f"big {i}")
    last = await send_text(api, alice, room_id, "big last")
    big, read_big = await _backfill_reading(hs, peer.server_name, room_id, last, 4)
    assert big == ["big last", "big 2", "big 1", "big 0"]
    # Judging each event reads its history visibility, not the 40 members' events.
    assert read_big == read_small, (read_small, read_big)
    await api.__aexit__(None, None, None)


async def test_backfill_shows_what_the_servers_members_could_see(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    """``shared``: a server none of whose users is joined now reads the events sent
    while one was; ``joined``: only those, whether joined now or not."""
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    await _add_members(api, room_id, 0, 5)
    await send_text(api, alice, room_id, "while joined")
    leave = peer.event(
        room, "m.room.member", {"membership": "leave"}, state_key=peer.user("mallory")
    )
    reply = await peer.send_transaction(name(hs), [leave.pdu])
    assert reply.status == 200 and reply.body["pdus"] == {leave.event_id: {}}, reply.body
    last = await send_text(api, alice, room_id, "after the leave")

    seen, _ = await _backfill_reading(hs, peer.server_name, room_id, last, 20)
    assert seen == ["while joined"]

    r = await api.put(
        f"/rooms/{q(room_id)}/state/m.room.history_visibility/",
        {"history_visibility": "world_readable"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    last = await send_text(api, alice, room_id, "world readable")
    seen, _ = await _backfill_reading(hs, peer.server_name, room_id, last, 20)
    assert seen == ["world readable", "while joined"]
    await api.__aexit__(None, None, None)
