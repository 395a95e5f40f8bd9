"""The scripted peer works against a real Myelin: keys, X-Matrix, join, send, custom routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, send_text, timeline_bodies
from tests.federation.scripted_peer import ScriptedPeer, wait_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def test_peer_joins_sends_and_receives(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs: RunningServer = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]

    room = await peer.join(name(hs), room_id)
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
    assert set(r.body["joined"]) == {alice.user_id, peer.user("mallory")}

    # A signed, hashed event from the peer reaches the local user's timeline.
    event = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "from the peer"})
    reply = await peer.send_transaction(name(hs), [event.pdu])
    assert (reply.status, reply.body) == (200, {"pdus": {event.event_id: {}}})
    room.add(event)
    assert await timeline_bodies(api, alice, room_id) == ["from the peer"]

    # The local user's message reaches the peer, which moves its extremity on.
    sent = await send_text(api, alice, room_id, "to the peer")
    await wait_for(lambda: room.head == [sent])
    assert room.head == [sent]
    await api.__aexit__(None, None, None)


async def test_custom_route_answers_inbound_requests(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True)
    seen: list[str] = []

    async def profile(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        seen.append(request.query["user_id"])
        return web.json_response({"displayname": "Scripted"})

    peer.route("GET", "/_matrix/federation/v1/query/profile", profile)
    api, alice = await register(hs, "alice")
    r = await api.get(f"/profile/{q(peer.user('mallory'))}", token=alice.access_token)
    assert (r.status, r.body.get("displayname")) == (200, "Scripted")
    assert seen == [peer.user("mallory")]
    await api.__aexit__(None, None, None)
