"""Events pushed with prev events their sender will not give, and the state at
events we hold no state for (server-server "Checks performed on receipt of a
PDU", "Retrieving the state of a room at an event").

An event pushed in a transaction whose prev events ``/get_missing_events``
does not give either is refused at once and not stored: we never ask its
sender for the state there (``/state_ids``), whose word would then become the
room's state (and a sender that does not answer would hold up its own next
transactions). Only the earliest of the events ``/get_missing_events`` returns
may have their own prevs missing; the state there is asked for (covered by
``test_rooms_gaps`` and ``test_rooms_gap_state``).

``/state`` and ``/state_ids`` at a rejected event or an outlier answer
M_NOT_FOUND: neither has a state we can tell.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.pdu.pipeline import PREVS_NOT_GIVEN
from homeserver.events.model import Event
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, q
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer

FED = "/_matrix/federation/v1"


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def asked(peer: ScriptedPeer, what: str) -> list[Any]:
    return [r.body for r in peer.received if r.path.startswith(f"{FED}/{what}/")]


def message(peer: ScriptedPeer, room: PeerRoom, body: str, prevs: list[str]) -> Event:
    fields = peer.event_fields(room, "m.room.message", {"msgtype": "m.text", "body": body})
    fields["prev_events"] = prevs
    event = peer.build(room.version, fields)
    room.depth += 1
    return event


async def test_pushed_event_whose_prevs_are_not_given_is_refused_at_once(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, _alice, _room_id, room = await peer_in_public_room(make_server, peer)
    hidden = message(peer, room, "never sent", list(room.head))
    pushed = message(peer, room, "pushed", [hidden.event_id])
    later = message(peer, room, "later", [pushed.event_id])

    async def none_missing(request: web.Request, params: dict[str, str], body: Any) -> Any:
        return web.json_response({"events": []})

    async def state_ids(request: web.Request, params: dict[str, str], body: Any) -> Any:
        raise AssertionError("the state at an undivulged prev event is never asked for")

    peer.route("POST", FED + "/get_missing_events/{roomId}", none_missing)
    peer.route("GET", FED + "/state_ids/{roomId}", state_ids)
    peer.route("GET", FED + "/state/{roomId}", state_ids)

    reply = await peer.send_transaction(name(hs), [pushed.pdu])
    assert reply.status == 200, reply.body
    assert reply.body["pdus"] == {pushed.event_id: {"error": PREVS_NOT_GIVEN}}
    events = hs.hs.rooms_area.events
    assert await events.by_id(pushed.event_id) is None  # not stored: asked for again later

    # An event on top of the refused one: its prev is missing again, so it is asked for.
    reply = await peer.send_transaction(name(hs), [later.pdu])
    assert reply.body["pdus"] == {later.event_id: {"error": PREVS_NOT_GIVEN}}
    bodies = asked(peer, "get_missing_events")
    assert [b["latest_events"] for b in bodies] == [[pushed.event_id], [later.event_id]]
    assert asked(peer, "state_ids") == [] and asked(peer, "state") == []
    assert await events.by_id(later.event_id) is None

    # The room is unharmed: the peer's next event on what Myelin holds is accepted.
    good = message(peer, room, "good", list(room.head))
    reply = await peer.send_transaction(name(hs), [good.pdu])
    assert reply.body["pdus"] == {good.event_id: {}}
    stored = await events.by_id(good.event_id)
    assert stored is not None and stored.rejected_reason is None and not stored.outlier
    await api.__aexit__(None, None, None)


@pytest.mark.parametrize("state_key", [None, ""])
async def test_no_state_at_a_rejected_event(
    make_server: ServerFactory, peer: ScriptedPeer, state_key: str | None
) -> None:
    hs, api, _alice, room_id, room = await peer_in_public_room(make_server, peer)
    before = sorted(e.event_id for e in room.state.values())
    # A sender who is not in the room: rejected by the auth rules (and stored so).
    fields = peer.event_fields(
        room, "m.room.topic" if state_key == "" else "m.room.message", {"body": "Rejected"}
    )
    fields.update(
        sender=peer.user("fake_sender"),
        auth_events=[
            room.state[("m.room.create", "")].event_id,
            room.state[("m.room.power_levels", "")].event_id,
        ],
    )
    if state_key is not None:
        fields["state_key"] = state_key
    rejected = peer.build(room.version, fields)
    reply = await peer.send_transaction(name(hs), [rejected.pdu])
    assert reply.status == 200, reply.body
    stored = await hs.hs.rooms_area.events.by_id(rejected.event_id)
    assert stored is not None and stored.rejected_reason is not None
    # A regular event after it, citing it as its prev event.
    regular = message(peer, room, "Hello", [rejected.event_id])
    reply = await peer.send_transaction(name(hs), [regular.pdu])
    assert reply.body["pdus"] == {regular.event_id: {}}

    for what in ("state", "state_ids"):
        r2 = await peer.request(
            name(hs), "GET", f"{FED}/{what}/{q(room_id)}", query={"event_id": rejected.event_id}
        )
        assert r2.status == 404 and r2.body["errcode"] == "M_NOT_FOUND", (what, r2.body)
    # The state after the regular event is the state before the rejected one.
    r2 = await peer.request(
        name(hs), "GET", f"{FED}/state_ids/{q(room_id)}", query={"event_id": regular.event_id}
    )
    assert r2.status == 200, r2.body
    assert sorted(r2.body["pdu_ids"]) == before
    await api.__aexit__(None, None, None)


async def test_prev_held_only_as_an_outlier_is_bridged_and_has_no_state(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    """Q (a member event), R on Q citing Q as an auth event, S on R. S is pushed;
    get_missing_events gives R, whose auth event Q is fetched alone (an outlier).
    Q is still a gap in the graph: its state comes with /state_ids, S is accepted,
    and the state at the outlier Q is not ours to tell."""
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    state_at_q = [e.event_id for e in room.state.values()]
    mallory = peer.user("mallory")
    q_event = peer.event(
        room, "m.room.member", {"membership": "join", "displayname": "Q"}, state_key=mallory
    )
    room.add(q_event)
    r_event = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "R"})
    room.add(r_event)
    s_event = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "S"})
    room.add(s_event)
    assert q_event.event_id in r_event.auth_event_ids

    async def only_r(request: web.Request, params: dict[str, str], body: Any) -> Any:
        return web.json_response({"events": [r_event.pdu]})

    async def event(request: web.Request, params: dict[str, str], body: Any) -> Any:
        found = room.events.get(params["eventId"])
        if found is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        return web.json_response({"origin": peer.server_name, "pdus": [found.pdu]})

    async def state_ids(request: web.Request, params: dict[str, str], body: Any) -> Any:
        assert request.query["event_id"] == q_event.event_id
        return web.json_response({"pdu_ids": state_at_q, "auth_chain_ids": []})

    async def refuse(request: web.Request, params: dict[str, str], body: Any) -> Any:
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)

    peer.route("POST", FED + "/get_missing_events/{roomId}", only_r)
    peer.route("GET", FED + "/event/{eventId}", event)
    peer.route("GET", FED + "/event_auth/{roomId}/{eventId}", refuse)
    peer.route("GET", FED + "/state_ids/{roomId}", state_ids)

    reply = await peer.send_transaction(name(hs), [s_event.pdu])
    assert reply.body["pdus"] == {s_event.event_id: {}}
    events = hs.hs.rooms_area.events
    q_stored = await events.by_id(q_event.event_id)
    assert q_stored is not None and q_stored.outlier
    for e in (r_event, s_event):
        stored = await events.by_id(e.event_id)
        assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert len(asked(peer, "state_ids")) == 1
    r2 = await api.get(
        f"/rooms/{q(room_id)}/state/m.room.member/{q(mallory)}", token=alice.access_token
    )
    assert r2.status == 200 and r2.body.get("displayname") == "Q", r2.body
    for what in ("state", "state_ids"):
        r3 = await peer.request(
            name(hs), "GET", f"{FED}/{what}/{q(room_id)}", query={"event_id": q_event.event_id}
        )
        assert r3.status == 404 and r3.body["errcode"] == "M_NOT_FOUND", (what, r3.body)
    await api.__aexit__(None, None, None)
