"""The ``arena`` fixture of the hostile-peer suite (see ``support``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.federation.hostile.support import Arena
from tests.federation.rooms_support import register, send_text
from tests.federation.scripted_peer import ScriptedPeer, wait_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def build_arena(
    make_server: ServerFactory,
    peer: ScriptedPeer,
    caplog: pytest.LogCaptureFixture,
    **overrides: Any,
) -> Arena:
    """A Myelin server (``overrides`` go to its config), alice, her public room, the
    peer joined to it, and one message the peer has seen."""
    caplog.set_level(logging.INFO, logger="myelin")
    hs = await make_server(federated=True, **overrides)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room = await peer.join(hs.hs.config.server_name, r.body["room_id"])
    first = await send_text(api, alice, room.room_id, "before the peer misbehaves")
    assert await wait_for(lambda: room.head == [first])
    return Arena(hs, peer, room, api, alice, caplog)


@pytest.fixture
async def arena(
    make_server: ServerFactory, peer: ScriptedPeer, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Arena]:
    a = await build_arena(make_server, peer, caplog)
    try:
        yield a
    finally:
        await a.api.__aexit__(None, None, None)
