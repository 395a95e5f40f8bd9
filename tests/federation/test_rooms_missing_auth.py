"""Missing auth events are fetched from the sender, else the event is refused and
the reason logged once with the origin (issue 9: never guess).

A scripted peer in a room on Myelin sends a message whose auth events cite a
membership event of its user that Myelin has never seen.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import RunningServer
from homeserver.events.model import Event
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, timeline_bodies
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def _unseen_auth(peer: ScriptedPeer, room: PeerRoom) -> tuple[Event, Event]:
    """(a displayname change never sent, a message citing it as an auth event)."""
    user = peer.user("mallory")
    hidden = peer.build(
        room.version,
        peer.event_fields(
            room,
            "m.room.member",
            {"membership": "join", "displayname": "hidden"},
            state_key=user,
        ),
    )
    fields = peer.event_fields(room, "m.room.message", {"msgtype": "m.text", "body": "cites"})
    own = room.state[("m.room.member", user)].event_id
    fields["auth_events"] = [hidden.event_id if a == own else a for a in fields["auth_events"]]
    return hidden, peer.build(room.version, fields)


async def _setup(hs: RunningServer, peer: ScriptedPeer) -> tuple[Any, Any, str, PeerRoom]:
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    return api, alice, room_id, await peer.join(name(hs), room_id)


async def test_missing_auth_event_is_fetched_with_event_auth(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True)
    api, alice, room_id, room = await _setup(hs, peer)
    hidden, message = _unseen_auth(peer, room)
    asked: list[str] = []

    async def event_auth(request: web.Request, params: dict[str, str], body: Any) -> Any:
        asked.append(params["eventId"])
        chain = [room.state[k].pdu for k in room.state] + [hidden.pdu]
        return web.json_response({"auth_chain": chain})

    peer.route("GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", event_auth)
    reply = await peer.send_transaction(name(hs), [message.pdu])
    assert reply.body["pdus"] == {message.event_id: {}}
    assert asked == [message.event_id]
    assert "cites" in await timeline_bodies(api, alice, room_id)
    await api.__aexit__(None, None, None)


async def test_unobtainable_auth_event_refuses_the_event_and_says_why_once(
    make_server: ServerFactory, peer: ScriptedPeer, caplog: pytest.LogCaptureFixture
) -> None:
    hs = await make_server(federated=True)
    api, alice, room_id, room = await _setup(hs, peer)
    _, message = _unseen_auth(peer, room)
    caplog.set_level(logging.INFO, logger="myelin.federation")
    # The peer answers neither /event_auth nor /event (404 M_UNRECOGNIZED).
    reply = await peer.send_transaction(name(hs), [message.pdu])
    assert reply.body["pdus"] == {message.event_id: {"error": "Missing auth events"}}
    said = [
        r.getMessage()
        for r in caplog.records
        if message.event_id in r.getMessage() and "refused" in r.getMessage()
    ]
    assert len(said) == 1 and peer.server_name in said[0]
    assert await hs.hs.rooms_area.events.by_id(message.event_id) is None
    assert "cites" not in await timeline_bodies(api, alice, room_id)
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
    assert peer.user("mallory") in r.body["joined"]
    await api.__aexit__(None, None, None)
