"""Helpers for the purge, retention and erasure tests: sending, reading the timeline."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import Api, User
from tests.integration.admin_support import V1

MAX_POLLS = 200


async def create_room(api: Api, user: User, **body: object) -> str:
    r = await api.post("/createRoom", body, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def say(api: Api, user: User, room: str, text: str) -> str:
    r = await api.post(
        f"/rooms/{room}/send/m.room.message",
        {"msgtype": "m.text", "body": text},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


async def timeline(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """Every event /messages gives, paginating backwards from the end (bounded)."""
    out: list[dict[str, Any]] = []
    params = {"dir": "b", "limit": "3"}
    for _ in range(MAX_POLLS):
        r = await api.get(f"/rooms/{room}/messages", token=user.access_token, params=params)
        assert r.status == 200, r.body
        out.extend(r.body["chunk"])
        if "end" not in r.body or not r.body["chunk"]:
            return out
        params["from"] = r.body["end"]
    raise AssertionError("pagination did not end")


def bodies(events: list[dict[str, Any]]) -> set[str]:
    return {e["content"].get("body", "") for e in events if e["type"] == "m.room.message"}


async def wait_for_purge(api: Api, token: str, purge_id: str) -> dict[str, Any]:
    """The purge's final status (it runs in the background): polled, bounded."""
    for _ in range(MAX_POLLS):
        r = await api.get(f"{V1}/purge_history_status/{purge_id}", token=token)
        assert r.status == 200, r.body
        if r.body["status"] != "active":
            return dict(r.body)
        await asyncio.sleep(0.05)
    raise AssertionError("purge did not finish")
