"""The state at a gap is had whole or not at all (issue 9: never guess).

A scripted peer in a room on Myelin lets 60 of its users join without telling
Myelin, then a message after them and another on top of it, which it pushes.
``/get_missing_events`` gives only the first message (the pushed one's prev), whose
own prev is missing, so Myelin asks for the state at that gap (``/state_ids``).
The 60 unknown state events used to be fetched one by one, at most 500 of them,
and whatever could not be had was left out: the message was accepted on a state
with holes. Now many missing events come whole
with ``/state``; when the state cannot be had, the message is refused and the
reason logged once with the origin.
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
from tests.federation.forks import Branch
from tests.federation.rooms_support import name, q, register
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer

HIDDEN = 60


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


class Gap:
    """HIDDEN joins Myelin never saw, then a message on top of them."""

    def __init__(self, peer: ScriptedPeer, room: PeerRoom) -> None:
        branch = Branch(peer, room)
        for i in range(HIDDEN):
            user = peer.user(f"hidden{i}")
            branch.add("m.room.member", {"membership": "join"}, user, user)
        self.last = branch.events[-1]
        self.before_last = {
            k: e.event_id for k, e in branch.room.state.items() if e.event_id != self.last.event_id
        }
        events = {**room.events, **{e.event_id: e for e in branch.events}}
        self.chain = [i for i in events if i not in self.before_last.values()]
        mallory = peer.user("mallory")
        self.bridge = branch.add(
            "m.room.message", {"msgtype": "m.text", "body": "gap"}, mallory, None
        )
        self.message = branch.add(
            "m.room.message", {"msgtype": "m.text", "body": "after"}, mallory, None
        )
        self.events: dict[str, Event] = {**events, **{e.event_id: e for e in branch.events}}

    def route(self, peer: ScriptedPeer, *, whole_state: bool) -> None:
        async def only_bridge(request: web.Request, params: dict[str, str], body: Any) -> Any:
            return web.json_response({"events": [self.bridge.pdu]})

        async def state_ids(request: web.Request, params: dict[str, str], body: Any) -> Any:
            assert request.query["event_id"] == self.last.event_id
            ids = list(self.before_last.values())
            return web.json_response({"pdu_ids": ids, "auth_chain_ids": self.chain})

        async def state(request: web.Request, params: dict[str, str], body: Any) -> Any:
            return web.json_response(
                {
                    "pdus": [self.events[i].pdu for i in self.before_last.values()],
                    "auth_chain": [self.events[i].pdu for i in self.chain],
                }
            )

        async def one(request: web.Request, params: dict[str, str], body: Any) -> Any:
            event = self.events.get(params["eventId"])
            if event is None or event.type != "m.room.create":  # the peer tells little
                return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
            return web.json_response({"origin": peer.server_name, "pdus": [event.pdu]})

        fed = "/_matrix/federation/v1"
        peer.route("POST", fed + "/get_missing_events/{roomId}", only_bridge)
        peer.route("GET", fed + "/state_ids/{roomId}", state_ids)
        peer.route("GET", fed + "/event/{eventId}", one)
        if whole_state:
            peer.route("GET", fed + "/state/{roomId}", state)


async def _setup(hs: RunningServer, peer: ScriptedPeer) -> tuple[Any, Any, str, Gap]:
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    room = await peer.join(name(hs), room_id)
    return api, alice, room_id, Gap(peer, room)


async def test_many_missing_state_events_come_whole_with_state(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True)
    api, alice, room_id, gap = await _setup(hs, peer)
    gap.route(peer, whole_state=True)
    reply = await peer.send_transaction(name(hs), [gap.message.pdu])
    assert reply.body["pdus"] == {gap.message.event_id: {}}
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
    assert len(r.body["joined"]) == HIDDEN + 2
    await api.__aexit__(None, None, None)


async def test_a_state_with_holes_is_refused_and_said_once(
    make_server: ServerFactory, peer: ScriptedPeer, caplog: pytest.LogCaptureFixture
) -> None:
    hs = await make_server(federated=True)
    api, alice, room_id, gap = await _setup(hs, peer)
    gap.route(peer, whole_state=False)
    caplog.set_level(logging.INFO, logger="myelin.federation")
    reply = await peer.send_transaction(name(hs), [gap.message.pdu])
    error = reply.body["pdus"][gap.message.event_id].get("error")
    assert error == "Cannot determine the state before the event"
    said = [
        r.getMessage()
        for r in caplog.records
        if gap.message.event_id in r.getMessage() and "refused" in r.getMessage()
    ]
    assert len(said) == 1 and peer.server_name in said[0]
    assert await hs.hs.rooms_area.events.by_id(gap.message.event_id) is None
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
    assert len(r.body["joined"]) == 2
    await api.__aexit__(None, None, None)
