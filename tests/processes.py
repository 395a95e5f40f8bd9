"""Helpers shared by the tests that run several Myelin processes over one PostgreSQL
(test_two_processes, test_spread, the worker tests): bounded waits for what another
process must see, and the few client steps they all take."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import Api, Reply, User

WAIT_S = 30.0  # a bound for "it arrives", not a measurement
ROUNDS = 300  # bounded re-reads while a cross-process message is on its way


async def eventually(read: Callable[[], Awaitable[Reply]], ok: Callable[[Reply], bool]) -> Reply:
    """Read until ``ok`` (a message from the other process may still be in flight)."""
    reply = await read()
    for _ in range(ROUNDS):
        if ok(reply):
            return reply
        await asyncio.sleep(0.05)
        reply = await read()
    return reply


async def new_room(api: Api, user: User) -> str:
    r = await api.post("/createRoom", {"preset": "private_chat"}, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def send(api: Api, user: User, room_id: str, body: str) -> str:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(8)}",
        {"msgtype": "m.text", "body": body},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


def typing_in(body: dict[str, Any], room_id: str) -> list[str] | None:
    """The m.typing user list of ``room_id`` in a /sync answer (None: no m.typing)."""
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    for event in room.get("ephemeral", {}).get("events", []):
        if event["type"] == "m.typing":
            return list(event["content"]["user_ids"])
    return None
