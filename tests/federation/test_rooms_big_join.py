"""Joining a big remote room keeps its whole state (issue 9).

The joining server used to keep only the first 1,000 state events of the
send_join answer, silently: ``joined_members`` stayed short forever, and a
join rule or an invite that sat past that position was not seen, so the join
was refused ("invite only").

The resident server here is a scripted peer: it builds a signed room of a few
thousand members in memory (fast, and it puts the room's closing join rules
and our user's invite at the END of the state it returns), and answers
make_join and send_join.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from federation.pdu import fetch
from homeserver.app import RunningServer
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import ServerFactory
from tests.federation.rooms_support import q, register
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer

MEMBERS = 3000
V12 = KNOWN_ROOM_VERSIONS["12"]


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


class BigRoom:
    """A v12 room on the peer: creator, MEMBERS joined users, then closed and our
    user invited. ``state`` is in the order the peer returns it."""

    def __init__(self, peer: ScriptedPeer, invitee: str, members: int = MEMBERS) -> None:
        self.peer = peer
        creator = peer.user("creator")
        create = peer.build(
            V12,
            {
                "type": "m.room.create",
                "state_key": "",
                "sender": creator,
                "content": {"room_version": "12"},
                "prev_events": [],
                "auth_events": [],
                "depth": 1,
            },
        )
        self.room = PeerRoom("!" + create.event_id[1:], V12, {})
        self.room.add(create)
        self.all: list[Event] = [create]
        self._add("m.room.member", {"membership": "join"}, creator, creator)
        self._add("m.room.power_levels", {"users": {}}, creator, "")
        self._add("m.room.join_rules", {"join_rule": "public"}, creator, "")
        for i in range(members):
            user = peer.user(f"m{i}")
            self._add("m.room.member", {"membership": "join"}, user, user)
        self._add("m.room.join_rules", {"join_rule": "invite"}, creator, "")
        self._add("m.room.member", {"membership": "invite"}, creator, invitee)
        self.state = [e for e in self.all if self.room.state.get(e.state_tuple()) is e]

    def _add(self, event_type: str, content: dict[str, Any], sender: str, state_key: str) -> None:
        fields = self.peer.event_fields(
            self.room, event_type, content, sender=sender, state_key=state_key
        )
        event = self.peer.build(V12, fields)
        self.room.add(event)
        self.all.append(event)

    async def make_join(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        user = params["userId"]
        fields = self.peer.event_fields(
            self.room, "m.room.member", {"membership": "join"}, sender=user, state_key=user
        )
        return web.json_response({"room_version": "12", "event": fields})

    async def send_join(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        return web.json_response(
            {
                "origin": self.peer.server_name,
                "event": body,
                "state": [e.pdu for e in self.state],
                "auth_chain": [e.pdu for e in self.all],
                "members_omitted": False,
            }
        )


async def test_join_of_a_big_invite_only_room_keeps_all_state(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs: RunningServer = await make_server(federated=True)
    api, bob = await register(hs, "bob")
    big = BigRoom(peer, bob.user_id)
    assert len(big.state) == MEMBERS + 5
    # Our user's invite and the room's join rules come after the first 1,000.
    positions = {e.type + e.content.get("membership", ""): n for n, e in enumerate(big.state)}
    assert positions["m.room.join_rules"] > 1000 and positions["m.room.memberinvite"] > 1000
    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", big.make_join)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", big.send_join)

    room_id = big.room.room_id
    r = await api.post(
        f"/join/{q(room_id)}?server_name={quote(peer.server_name)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body

    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=bob.access_token)
    assert r.status == 200, r.body
    assert len(r.body["joined"]) == MEMBERS + 2  # the members, the creator, and Bob
    r = await api.get(f"/rooms/{q(room_id)}/state/m.room.join_rules/", token=bob.access_token)
    assert r.body == {"join_rule": "invite"}
    r = await api.get(f"/rooms/{q(room_id)}/state", token=bob.access_token)
    held = {(e["type"], e["state_key"]): e["event_id"] for e in r.body}
    expected = {e.state_tuple(): e.event_id for e in big.state}
    bob_key = ("m.room.member", bob.user_id)
    assert held.pop(bob_key) != expected.pop(bob_key)  # the invite, replaced by the join
    assert held == expected
    await api.__aexit__(None, None, None)


async def test_a_state_over_the_limit_fails_the_join_loudly(
    make_server: ServerFactory, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_STATE_EVENTS`` the join fails and says why; it never keeps a part."""
    monkeypatch.setattr(fetch, "MAX_STATE_EVENTS", 100)
    hs: RunningServer = await make_server(federated=True)
    api, bob = await register(hs, "bob")
    big = BigRoom(peer, bob.user_id, members=150)
    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", big.make_join)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", big.send_join)
    room_id = big.room.room_id
    r = await api.post(
        f"/join/{q(room_id)}?server_name={quote(peer.server_name)}", {}, token=bob.access_token
    )
    assert r.status == 502, r.body
    assert r.body["errcode"] == "M_UNKNOWN" and "at most 100" in r.body["error"]
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=bob.access_token)
    assert r.status == 403, r.body
    await api.__aexit__(None, None, None)
