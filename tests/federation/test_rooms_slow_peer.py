"""A slow server does not stall local users' sends in a shared room (issue 9).

The inbound pipeline used to hold the room's writer lock while it asked the
sender for missing prev events (60 s timeouts), so every local send in that
room waited for the slow server. The scripted peer here sends an event whose
prev event we lack and answers ``/get_missing_events`` only when the test
releases it (at most 30 s later); local sends must all complete before that
answer is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import RunningServer
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import sign_event
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, register, send_text, timeline_bodies
from tests.federation.scripted_peer import ScriptedPeer, wait_for

SLOW_ANSWER_S = 30.0


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def test_local_sends_complete_before_a_slow_peer_answers(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs: RunningServer = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    room = await peer.join(name(hs), room_id)

    hidden = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "hidden"})
    room.add(hidden)
    late = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "late"})

    asked = asyncio.Event()
    release = asyncio.Event()
    answered = asyncio.Event()

    async def missing(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        asked.set()
        try:
            await asyncio.wait_for(release.wait(), SLOW_ANSWER_S)
        except TimeoutError:
            pass
        answered.set()
        return web.json_response({"events": [hidden.pdu]})

    peer.route("POST", "/_matrix/federation/v1/get_missing_events/{roomId}", missing)
    delivery = asyncio.create_task(peer.send_transaction(name(hs), [late.pdu], timeout_s=120))
    try:
        assert await wait_for(asked.is_set)
        # The peer is holding its answer; the room must stay writable meanwhile.
        for n in range(3):
            await send_text(api, alice, room_id, f"local {n}")
        assert not answered.is_set(), "a local send waited for the slow server"
    finally:
        release.set()
    reply = await delivery
    assert reply.status == 200 and reply.body["pdus"] == {late.event_id: {}}
    bodies = await timeline_bodies(api, alice, room_id)
    assert {"local 0", "local 1", "local 2", "hidden", "late"} <= set(bodies)
    await api.__aexit__(None, None, None)


async def test_other_servers_and_the_slow_servers_next_transaction(
    make_server: ServerFactory, peer: ScriptedPeer, tmp_path: Path
) -> None:
    """Per-origin queues: while the slow server's transaction waits on its own
    answer, another server's transaction in the same room goes through; the slow
    server's next transaction waits its turn (one at a time per origin, in order)."""
    hs: RunningServer = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    room = await peer.join(name(hs), room_id)
    async with ScriptedPeer(tmp_path / "other") as other:
        other_room = await other.join(name(hs), room_id, "olive")
        hidden = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "hidden"})
        room.add(hidden)
        late = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "late"})
        room.add(late)
        after = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": "after"})
        asked, release = asyncio.Event(), asyncio.Event()

        async def missing(request: web.Request, params: dict[str, str], body: Any) -> Any:
            asked.set()
            try:
                await asyncio.wait_for(release.wait(), SLOW_ANSWER_S)
            except TimeoutError:
                pass
            return web.json_response({"events": [hidden.pdu]})

        peer.route("POST", "/_matrix/federation/v1/get_missing_events/{roomId}", missing)
        first = asyncio.create_task(peer.send_transaction(name(hs), [late.pdu], timeout_s=120))
        try:
            assert await wait_for(asked.is_set)
            second = asyncio.create_task(
                peer.send_transaction(name(hs), [after.pdu], timeout_s=120)
            )
            quick = other.event(
                other_room,
                "m.room.message",
                {"msgtype": "m.text", "body": "o"},
                sender=other.user("olive"),
            )
            reply = await other.send_transaction(name(hs), [quick.pdu])
            assert reply.body["pdus"] == {quick.event_id: {}}
            assert not first.done() and not second.done()
        finally:
            release.set()
        assert (await first).body["pdus"] == {late.event_id: {}}
        assert (await second).body["pdus"] == {after.event_id: {}}
    bodies = await timeline_bodies(api, alice, room_id)
    assert {"hidden", "late", "after", "o"} <= set(bodies)
    await api.__aexit__(None, None, None)


async def test_local_sends_complete_while_an_invitees_server_is_slow(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    """Inviting a remote user asks their server to sign the invite; that request runs
    outside the room's lock, so sends in the room go on while the server is slow. The
    invite, built on extremities that moved meanwhile, is built again and lands."""
    hs: RunningServer = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    invitee = peer.user("bob")
    release = asyncio.Event()
    asked: list[str] = []

    async def invite(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        asked.append(params["eventId"])
        if len(asked) == 1:
            try:
                await asyncio.wait_for(release.wait(), SLOW_ANSWER_S)
            except TimeoutError:
                pass
        version = KNOWN_ROOM_VERSIONS[body["room_version"]]
        signed = sign_event(body["event"], peer.server_name, peer.signing_key, version)
        return web.json_response({"event": signed})

    peer.route("PUT", "/_matrix/federation/v2/invite/{roomId}/{eventId}", invite)
    sending = asyncio.create_task(
        api.post(f"/rooms/{room_id}/invite", {"user_id": invitee}, token=alice.access_token)
    )
    try:
        assert await wait_for(lambda: asked)
        for n in range(3):
            await send_text(api, alice, room_id, f"local {n}")
        assert not sending.done(), "the invite finished before the slow server answered"
    finally:
        release.set()
    reply = await sending
    assert reply.status == 200, reply.body
    assert len(asked) == 2  # built again on the room's new extremities, signed again
    r = await api.get(f"/rooms/{room_id}/state/m.room.member/{invitee}", token=alice.access_token)
    assert r.status == 200 and r.body["membership"] == "invite"
    assert {"local 0", "local 1", "local 2"} <= set(await timeline_bodies(api, alice, room_id))
    await api.__aexit__(None, None, None)
