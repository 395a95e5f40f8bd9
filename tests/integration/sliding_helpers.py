"""Helpers for the simplified sliding sync (MSC4186) tests."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, Reply, User

SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def sliding(
    api: Api, user: User, body: dict[str, Any], pos: str | None = None, timeout_ms: int = 0
) -> Reply:
    params = {"timeout": str(timeout_ms)}
    if pos is not None:
        params["pos"] = pos
    return await api.post(SLIDING, body, token=user.access_token, params=params)


async def sliding_ok(
    api: Api, user: User, body: dict[str, Any], pos: str | None = None, timeout_ms: int = 0
) -> dict[str, Any]:
    r = await sliding(api, user, body, pos, timeout_ms)
    assert r.status == 200, r.body
    assert isinstance(r.body["pos"], str)
    out: dict[str, Any] = r.body
    return out


def all_list(
    timeline_limit: int = 5,
    required_state: list[list[str]] | None = None,
    end: int = 99,
    **filters: Any,
) -> dict[str, Any]:
    return {
        "ranges": [[0, end]],
        "timeline_limit": timeline_limit,
        "required_state": required_state or [],
        "filters": filters,
    }


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body", "") for e in events if e["type"] == "m.room.message"]
