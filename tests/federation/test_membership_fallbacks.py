"""Membership handshakes with servers that answer otherwise than a Myelin: only the
deprecated v1 invite, a make_join or make_leave refused or failing, and the resident
side's refusals (a join for another server's user, a room all our users have left).
A scripted peer (real HTTPS on loopback) plays the other server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.events.keys import generate_signing_key
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import sign_json
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer, matrix_error

V10 = KNOWN_ROOM_VERSIONS["10"]


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def peer_room(peer: ScriptedPeer, join_rule: str = "invite") -> PeerRoom:
    """A v10 room that lives on the peer alone (invite-only unless said otherwise)."""
    creator = peer.user("mallory")
    create = peer.build(
        V10,
        {
            "type": "m.room.create",
            "room_id": f"!room:{peer.server_name}",
            "sender": creator,
            "state_key": "",
            "content": {"creator": creator, "room_version": "10"},
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
        },
    )
    room = PeerRoom(create.room_id, V10, {})
    room.add(create)
    for etype, key, content in (
        ("m.room.member", creator, {"membership": "join"}),
        ("m.room.power_levels", "", {"users": {creator: 100}}),
        ("m.room.join_rules", "", {"join_rule": join_rule}),
    ):
        room.add(peer.event(room, etype, content, state_key=key))
    return room


async def test_invite_rejected_locally_when_the_inviting_server_refuses(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    room = peer_room(peer)
    invite = peer.event(room, "m.room.member", {"membership": "invite"}, state_key=alice.user_id)
    reply = await peer.request(
        name(hs),
        "PUT",
        f"/_matrix/federation/v2/invite/{q(room.room_id)}/{q(invite.event_id)}",
        {"event": invite.pdu, "room_version": "10", "invite_room_state": []},
    )
    assert reply.status == 200, reply.body
    r = await api.get("/sync", token=alice.access_token)
    assert room.room_id in r.body["rooms"]["invite"]
    since = r.body["next_batch"]

    async def refuse(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return matrix_error(403, "M_FORBIDDEN", "no")

    peer.route("GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", refuse)
    r = await api.post(f"/rooms/{q(room.room_id)}/leave", {}, token=alice.access_token)
    assert r.status == 200, r.body
    r = await api.get("/sync", token=alice.access_token, params={"since": since})
    rooms = r.body["rooms"]
    assert room.room_id not in rooms["invite"]
    left = rooms["leave"][room.room_id]["timeline"]["events"]
    assert left[-1]["content"]["membership"] == "leave"
    await api.__aexit__(None, None, None)


async def test_invite_falls_back_to_v1_and_make_join_errors_reach_the_client(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"room_version": "10"}, token=alice.access_token)
    room_id = r.body["room_id"]

    # The peer has only the v1 invite endpoint (v2: 404 M_UNRECOGNIZED); v1 answers
    # [200, {"event": ...}].
    async def v1_invite(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        signed = sign_json(
            {k: v for k, v in body.items() if k != "unsigned"}, peer.server_name, peer.signing_key
        )
        return web.json_response([200, {"event": signed}])

    peer.route("PUT", "/_matrix/federation/v1/invite/{roomId}/{eventId}", v1_invite)
    bob = peer.user("bob")
    r = await api.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob}, token=alice.access_token)
    assert r.status == 200, r.body
    r = await api.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(bob)}", token=alice.access_token)
    assert r.body["membership"] == "invite"

    # A make_join refusal with a Matrix error is passed on as it was given.
    async def incompatible(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return web.json_response(
            {"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "no", "room_version": "x-99"},
            status=400,
        )

    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", incompatible)
    elsewhere = f"!other:{peer.server_name}"
    r = await api.post(f"/join/{q(elsewhere)}", {}, token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert r.body["room_version"] == "x-99"

    # A send_join answer whose state lacks the create event is refused.
    room = peer_room(peer, join_rule="public")

    async def make_join(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        fields = peer.event_fields(
            room,
            "m.room.member",
            {"membership": "join"},
            sender=alice.user_id,
            state_key=alice.user_id,
        )
        return web.json_response({"event": fields, "room_version": "10"})

    async def send_join(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        state = [e.pdu for k, e in room.state.items() if k[0] != "m.room.create"]
        chain = [e.pdu for e in room.events.values()]
        return web.json_response({"state": state, "auth_chain": chain, "event": body})

    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", make_join)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", send_join)
    r = await api.post(f"/join/{q(room.room_id)}", {}, token=alice.access_token)
    assert r.status >= 400, r.body
    r = await api.get(f"/rooms/{q(room.room_id)}/joined_members", token=alice.access_token)
    assert r.status != 200

    # A make_join answer without room_version (so v1/v2) whose template cites plain
    # ids: the join is built and sent; the answer, of another room version's event
    # format, is refused and the client told.
    async def make_join_unversioned(
        request: web.Request, params: dict[str, str], body: Any
    ) -> web.Response:
        fields = peer.event_fields(
            room,
            "m.room.member",
            {"membership": "join"},
            sender=alice.user_id,
            state_key=alice.user_id,
        )
        return web.json_response({"event": fields})

    async def send_join_whole(
        request: web.Request, params: dict[str, str], body: Any
    ) -> web.Response:
        sent_joins.append(body)
        state = [e.pdu for e in room.state.values()]
        chain = [e.pdu for e in room.events.values()]
        return web.json_response({"state": state, "auth_chain": chain})

    sent_joins: list[Any] = []
    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", make_join_unversioned)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", send_join_whole)
    r = await api.post(f"/join/{q(room.room_id)}", {}, token=alice.access_token)
    assert r.status >= 400, r.body
    assert len(sent_joins) == 1
    assert sent_joins[0]["prev_events"] == list(room.head)  # as the template cites them
    r = await api.get(f"/rooms/{q(room.room_id)}/joined_members", token=alice.access_token)
    assert r.status != 200
    await api.__aexit__(None, None, None)


async def test_resident_refuses_foreign_joins_and_rooms_it_left(
    make_server: ServerFactory, peer: ScriptedPeer, tmp_path: Path
) -> None:
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]

    # A join of another server's user (signed by that server), sent by the peer: 403.
    async with ScriptedPeer(tmp_path / "other") as other:
        eve = other.user("eve")
        made = await other.request(
            name(hs),
            "GET",
            f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(eve)}",
            query={"ver": ["10", "12"]},
        )
        assert made.status == 200, made.body
        version = KNOWN_ROOM_VERSIONS[made.body["room_version"]]
        template = made.body["event"]
        fields = {k: v for k, v in template.items() if k not in ("origin", "origin_server_ts")}
        join = other.build(version, fields)
        reply = await peer.request(
            name(hs),
            "PUT",
            f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(join.event_id)}",
            join.pdu,
        )
        assert (reply.status, reply.body.get("errcode")) == (403, "M_FORBIDDEN")

    # A join of the peer's own user signed with a key the peer never published: 403;
    # an invite that breaks the room version's JSON rules (a float): 400.
    made = await peer.request(
        name(hs),
        "GET",
        f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(peer.user('zed'))}",
        query={"ver": ["10", "12"]},
    )
    assert made.status == 200, made.body
    fields = {
        k: v for k, v in made.body["event"].items() if k not in ("origin", "origin_server_ts")
    }
    impostor = generate_signing_key(peer.signing_key.version)
    forged = peer.build(version, fields, key=impostor)
    reply = await peer.request(
        name(hs),
        "PUT",
        f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(forged.event_id)}",
        forged.pdu,
    )
    assert (reply.status, reply.body.get("errcode")) == (403, "M_FORBIDDEN")
    # The template sent back as it came, never hashed nor signed: 403 too (it is not
    # signed as it must be), on v1 send_join and on send_leave alike.
    unsigned = dict(fields, origin_server_ts=1)
    unsigned_id = "$" + "u" * 43  # refused before the path's id is compared
    for path in ("v1/send_join", "v2/send_leave", "v1/send_leave"):
        body = unsigned
        if path.endswith("leave"):
            body = dict(unsigned, content={"membership": "leave"})
        reply = await peer.request(
            name(hs),
            "PUT",
            f"/_matrix/federation/{path}/{q(room_id)}/{q(unsigned_id)}",
            body,
        )
        assert (reply.status, reply.body.get("errcode")) == (403, "M_FORBIDDEN"), (path, reply)
    room = peer_room(peer)
    bad = peer.event(
        room, "m.room.member", {"membership": "invite", "weight": 1.5}, state_key=alice.user_id
    )
    reply = await peer.request(
        name(hs),
        "PUT",
        f"/_matrix/federation/v2/invite/{q(room.room_id)}/{q(bad.event_id)}",
        {"event": bad.pdu, "room_version": "10", "invite_room_state": []},
    )
    assert (reply.status, reply.body.get("errcode")) == (400, "M_BAD_JSON")

    # Once every local user has left, the server no longer offers joins.
    assert (
        await api.post(f"/rooms/{q(room_id)}/leave", {}, token=alice.access_token)
    ).status == 200
    made = await peer.request(
        name(hs),
        "GET",
        f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(peer.user('eve'))}",
        query={"ver": ["10", "12"]},
    )
    assert (made.status, made.body.get("errcode")) == (404, "M_NOT_FOUND")
    await api.__aexit__(None, None, None)
