"""``OutboundRooms.servers_in_room``: the servers with a joined member. A join
handshake asks it several times (make_join, send_join's ``servers_in_room``, the
relay of the join), so it reads one row per server in the database rather than a
big room's every member row (issue 15 #7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path

import pytest

from homeserver.storage.database import count_statements
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, q
from tests.federation.scripted_peer import ScriptedPeer


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def test_servers_in_room_reads_servers_not_members(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, _alice, room_id, _room = await peer_in_public_room(make_server, peer)
    for i in range(20):
        user = await api.register(f"m{i}")
        r = await api.post(f"/rooms/{q(room_id)}/join", {}, token=user.access_token)
        assert r.status == 200, r.body
    leaver = await api.register("leaver")
    r = await api.post(f"/rooms/{q(room_id)}/join", {}, token=leaver.access_token)
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{q(room_id)}/leave", {}, token=leaver.access_token)
    assert r.status == 200, r.body
    fed = hs.hs.federation
    assert fed is not None and fed.rooms is not None
    outbound = fed.rooms.outbound
    members = hs.hs.rooms_area.rooms.members
    room = await hs.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None

    listed = 0
    every = members.members
    asking: ContextVar[bool] = ContextVar("asking", default=False)

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal listed
        listed += asking.get()  # this task's only: background tasks read meanwhile
        return await every(*args, **kwargs)  # type: ignore[arg-type]

    members.members = counted  # type: ignore[method-assign, assignment]
    asking.set(True)
    try:
        with count_statements() as counter:
            servers = await outbound.servers_in_room(room)
    finally:
        members.members = every  # type: ignore[method-assign]
    assert servers == {name(hs), peer.server_name}
    assert listed == 0  # no member list built
    assert counter.total <= 2, counter.by_sql
    await api.__aexit__(None, None, None)
