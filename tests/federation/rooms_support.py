"""Helpers for the rooms-across-servers tests."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any, NamedTuple
from urllib.parse import quote

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer
from tests.helpers import Api, User


def name(server: RunningServer) -> str:
    return server.hs.config.server_name


async def settle(*servers: RunningServer, timeout_s: float = 30.0) -> None:
    """Wait until no server's outbox sender is busy towards any of ``servers``
    (a PDU relayed on receipt keeps the relaying sender busy, so this covers
    chains). A sender towards a server that is not listed (stopped) is ignored."""
    names = {name(s) for s in servers}
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        busy = False
        for s in servers:
            fed = s.hs.federation
            assert fed is not None and fed.relay is not None
            if fed.relay.sender.busy_destinations() & names:
                busy = True
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.02)


async def register(server: RunningServer, username: str) -> tuple[Api, User]:
    api = Api(server.client_url)
    await api.__aenter__()
    return api, await api.register(username)


class PeerInRoom(NamedTuple):
    """A federated server, alice's public room on it, and the room as a scripted peer joined it."""

    hs: RunningServer
    api: Api  # alice's client (entered: the test closes it)
    alice: User
    room_id: str
    room: PeerRoom


async def peer_in_public_room(make_server: ServerFactory, peer: ScriptedPeer) -> PeerInRoom:
    """The usual start of a scripted-peer test: alice makes a public room, the peer joins."""
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    return PeerInRoom(hs, api, alice, room_id, await peer.join(name(hs), room_id))


def q(value: str) -> str:
    return quote(value, safe="")


async def send_text(api: Api, user: User, room_id: str, body: str) -> str:
    r = await api.put(
        f"/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(6)}",
        {"msgtype": "m.text", "body": body},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


async def timeline_bodies(api: Api, user: User, room_id: str) -> list[str]:
    r = await api.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=100", token=user.access_token)
    assert r.status == 200, r.body
    return [
        e["content"].get("body") for e in reversed(r.body["chunk"]) if e["type"] == "m.room.message"
    ]


async def timeline_sync(
    api: Api, user: User, since: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """An immediate /sync (from ``since``) with up to ``limit`` timeline events a room."""
    flt = json.dumps({"room": {"timeline": {"limit": limit}}})
    path = f"/sync?timeout=0&filter={q(flt)}"
    if since is not None:
        path += f"&since={q(since)}"
    r = await api.get(path, token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body)


async def sync_rooms(api: Api, user: User) -> dict[str, Any]:
    r = await api.get("/sync?timeout=0", token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body["rooms"])


async def state_content(api: Api, user: User, room_id: str, event_type: str) -> Any:
    r = await api.get(f"/rooms/{q(room_id)}/state/{event_type}", token=user.access_token)
    return r.body if r.status == 200 else None
