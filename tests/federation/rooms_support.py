"""Helpers for the rooms-across-servers tests."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from homeserver.app import RunningServer
from tests.helpers import Api, User


def name(server: RunningServer) -> str:
    return server.hs.config.server_name


async def settle(*servers: RunningServer) -> None:
    """Wait until every server's direct sender has delivered what it queued
    (relays queue more, so loop until all are idle)."""
    for _ in range(20):
        busy = False
        for s in servers:
            fed = s.hs.federation
            assert fed is not None and fed.direct_sender is not None
            if fed.direct_sender._tasks:
                busy = True
                await fed.direct_sender.idle()
        if not busy:
            return


async def register(server: RunningServer, username: str) -> tuple[Api, User]:
    api = Api(server.client_url)
    await api.__aenter__()
    return api, await api.register(username)


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


async def sync_rooms(api: Api, user: User) -> dict[str, Any]:
    r = await api.get("/sync?timeout=0", token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body["rooms"])


async def state_content(api: Api, user: User, room_id: str, event_type: str) -> Any:
    r = await api.get(f"/rooms/{q(room_id)}/state/{event_type}", token=user.access_token)
    return r.body if r.status == 200 else None
