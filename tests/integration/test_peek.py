"""MSC2753 peeking: POST /peek into a world_readable room (by id or local alias), its
events under rooms.peek of the peeking device's /sync (history first, then what is new,
long-polls woken by the room), never for another device, refused for other history
visibilities, and stopped by /unpeek (Sytest 31sync/17peeking)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def sync(api: Api, user: User, since: str | None = None, timeout: str = "0") -> Any:
    params = {"timeout": timeout}
    if since is not None:
        params["since"] = since
    r = await api.get("/sync", token=user.access_token, params=params)
    assert r.status == 200, r.body
    return r.body


async def world_readable_room(api: Api, alice: User, **body: Any) -> str:
    room = await create_room(api, alice, **body)
    r = await api.put(
        f"/rooms/{room}/state/m.room.history_visibility/",
        {"history_visibility": "world_readable"},
        token=alice.access_token,
    )
    assert r.status == 200
    return room


async def test_peeking_device_follows_the_room(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    login = await api.login("bob", bob.password)
    other_device = User(bob.user_id, login.body["access_token"], login.body["device_id"], "")
    room = await world_readable_room(api, alice)
    await send_text(api, alice, room, "before the peek", "t0")
    first = await sync(api, bob)
    r = await api.post(f"/peek/{room}", {}, token=bob.access_token)
    assert r.status == 200 and r.body == {"room_id": room}
    body = await sync(api, bob, first["next_batch"])
    peeked = body["rooms"]["peek"][room]
    # History as a non-member may see it: from the change to world_readable on (what
    # came before was "shared", for members only), with the room's state before that.
    events = peeked["timeline"]["events"]
    assert [e["type"] for e in events] == ["m.room.history_visibility", "m.room.message"]
    assert events[-1]["content"]["body"] == "before the peek"
    state = {e["type"] for e in peeked["state"]["events"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels"} <= state
    assert body["rooms"]["join"] == {}
    # Nothing new: the room is left out.
    again = await sync(api, bob, body["next_batch"])
    assert "peek" not in again["rooms"]
    # A long-poll wakes for the room's new event.
    poll = asyncio.ensure_future(sync(api, bob, again["next_batch"], timeout="30000"))
    await asyncio.sleep(0.05)
    await send_text(api, alice, room, "something new", "t1")
    woke = await asyncio.wait_for(poll, 60)
    events = woke["rooms"]["peek"][room]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["something new"]
    # Another device of the same user does not peek.
    assert "peek" not in (await sync(api, other_device))["rooms"]
    # Unpeek: gone from the next syncs.
    r = await api.post(f"/rooms/{room}/unpeek", {}, token=bob.access_token)
    assert r.status == 200
    await send_text(api, alice, room, "after the unpeek", "t2")
    assert "peek" not in (await sync(api, bob, woke["next_batch"]))["rooms"]


async def test_peek_by_alias_and_refusals(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await world_readable_room(api, alice, room_alias_name="peekable")
    r = await api.post(f"/peek/{quote('#peekable:localhost')}", {}, token=bob.access_token)
    assert r.status == 200 and r.body == {"room_id": room}
    assert room in (await sync(api, bob))["rooms"]["peek"]
    for visibility in ("shared", "invited", "joined"):
        other = await create_room(api, alice)
        r = await api.put(
            f"/rooms/{other}/state/m.room.history_visibility/",
            {"history_visibility": visibility},
            token=alice.access_token,
        )
        assert r.status == 200
        r = await api.post(f"/peek/{other}", {}, token=bob.access_token)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN", r.body
    r = await api.post("/peek/!nowhere:localhost", {}, token=bob.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
