"""The ``arena`` fixture of the hostile-peer suite (see ``support``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.federation.hostile.support import Arena
from tests.federation.rooms_support import register, send_text
from tests.federation.scripted_peer import ScriptedPeer, wait_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


@pytest.fixture
async def arena(
    make_server: ServerFactory, peer: ScriptedPeer, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Arena]:
    caplog.set_level(logging.INFO, logger="myelin")
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room = await peer.join(hs.hs.config.server_name, r.body["room_id"])
    first = await send_text(api, alice, room.room_id, "before the peer misbehaves")
    assert await wait_for(lambda: room.head == [first])
    try:
        yield Arena(hs, peer, room, api, alice, caplog)
    finally:
        await api.__aexit__(None, None, None)
