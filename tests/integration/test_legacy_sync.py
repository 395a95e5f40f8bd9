"""The deprecated sync endpoints the spec still defines (GET /events, /initialSync,
/rooms/{roomId}/initialSync, /events/{eventId}) over real HTTP; Sytest's older tests
and older clients use them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import shared_room


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """Guest accounts are off by default; this module's tests use them."""
    return await make_server(registration={"allow_guests": True})


async def get_ok(api: Api, path: str, user: User, **params: str) -> Any:
    r = await api.get(path, token=user.access_token, params=params)
    assert r.status == 200, r.body
    return r.body


async def test_events_stream_follows_from_token_and_long_polls(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    start = await get_ok(api, "/events", bob, timeout="0")
    assert set(start) == {"start", "end", "chunk"} and isinstance(start["chunk"], list)

    await send_text(api, alice, room_id, "hello", "t1")
    r = await api.put(
        f"/user/{bob.user_id}/rooms/{room_id}/tags/u.work", {"order": 0.5}, token=bob.access_token
    )
    assert r.status == 200
    got = await get_ok(api, "/events", bob, timeout="0", **{"from": start["end"]})
    assert got["start"] == start["end"]
    messages = [e for e in got["chunk"] if e["type"] == "m.room.message"]
    assert [(m["content"]["body"], m["room_id"]) for m in messages] == [("hello", room_id)]
    tags = [e for e in got["chunk"] if e["type"] == "m.tag"]
    assert tags and tags[-1]["room_id"] == room_id and "u.work" in tags[-1]["content"]["tags"]

    # Nothing new: a long-poll from `end` wakes when alice sends.
    poll = asyncio.ensure_future(
        get_ok(api, "/events", bob, timeout="30000", **{"from": got["end"]})
    )
    await asyncio.sleep(0)
    await send_text(api, alice, room_id, "later", "t2")
    woke = await asyncio.wait_for(poll, 60)
    assert [e["content"]["body"] for e in woke["chunk"] if e["type"] == "m.room.message"] == [
        "later"
    ]
    r = await api.get("/events", token=bob.access_token, params={"from": "garbage!"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    for bad in ("-1", "ten"):
        r = await api.get("/events", token=bob.access_token, params={"limit": bad})
        assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_events_stream_leaves_to_device_to_sync(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    start = await get_ok(api, "/events", bob, timeout="0")
    r = await api.put(
        "/sendToDevice/m.test/txn1",
        {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}},
        token=alice.access_token,
    )
    assert r.status == 200
    await get_ok(api, "/events", bob, timeout="0", **{"from": start["end"]})
    again = await get_ok(api, "/events", bob, timeout="0", **{"from": start["end"]})
    await get_ok(api, "/events", bob, timeout="0", **{"from": again["end"]})
    synced = await get_ok(api, "/sync", bob)
    assert [e["content"] for e in synced["to_device"]["events"]] == [{"n": 1}]


async def test_guest_needs_room_id_for_events(api: Api) -> None:
    guest = (await api.register_guest()).access_token
    r = await api.get("/events", token=guest, params={"timeout": "0"})
    assert r.status == 403 and r.errcode == "M_GUEST_ACCESS_FORBIDDEN"


async def test_initial_sync_global_and_per_room(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    await send_text(api, alice, room_id, "hi", "t1")
    r = await api.put(
        f"/user/{alice.user_id}/account_data/my.type", {"x": 1}, token=alice.access_token
    )
    assert r.status == 200

    body = await get_ok(api, "/initialSync", alice, limit="3")
    assert body["end"]
    [room] = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert room["membership"] == "join" and room["visibility"] in ("public", "private")
    assert len(room["messages"]["chunk"]) == 3
    assert room["messages"]["chunk"][-1]["content"]["body"] == "hi"
    assert {"start", "end"} <= set(room["messages"])
    state = {(e["type"], e["state_key"]) for e in room["state"]}
    assert ("m.room.create", "") in state and ("m.room.member", bob.user_id) in state
    assert [e["type"] for e in body["account_data"]] == ["my.type"]

    per_room = await get_ok(api, f"/rooms/{room_id}/initialSync", bob)
    assert per_room["room_id"] == room_id and per_room["membership"] == "join"
    assert per_room["messages"]["chunk"][-1]["content"]["body"] == "hi"
    by_user = {p["content"]["user_id"]: p for p in per_room["presence"]}
    assert set(by_user) == {alice.user_id, bob.user_id}
    assert all("presence" in p["content"] for p in by_user.values())

    carol = await api.register("carol")
    r = await api.get(f"/rooms/{room_id}/initialSync", token=carol.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get("/initialSync", token=alice.access_token, params={"archived": "maybe"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_event_by_id_respects_visibility(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "x"},
        token=alice.access_token,
    )
    event_id = r.body["event_id"]
    got = await get_ok(api, f"/events/{event_id}", bob)
    assert got["event_id"] == event_id and got["room_id"] == room_id
    carol = await api.register("carol")
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility",
        {"history_visibility": "joined"},
        token=alice.access_token,
    )
    assert r.status == 200
    r = await api.get(f"/events/{event_id}", token=carol.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.get("/events/$nope", token=bob.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_initial_sync_limit_zero_user_id_and_departed_room(api: Api) -> None:
    """Sytest 30rooms/01state and 11leaving: limit=0 gives no messages, events carry the
    legacy `user_id`, and a departed room's initialSync has no presence."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    body = await get_ok(api, "/initialSync", alice, limit="0")
    [room] = [r for r in body["rooms"] if r["room_id"] == room_id]
    assert room["messages"]["chunk"] == []
    members = {e["state_key"]: e for e in room["state"] if e["type"] == "m.room.member"}
    assert members[bob.user_id]["user_id"] == bob.user_id
    per_room = await get_ok(api, f"/rooms/{room_id}/initialSync", alice, limit="0")
    assert per_room["messages"]["chunk"] == []
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    await send_text(api, alice, room_id, "after", "t9")
    left = await get_ok(api, f"/rooms/{room_id}/initialSync", bob)
    assert left["membership"] == "leave" and left["presence"] == [] and left["receipts"] == []
    assert "after" not in [e["content"].get("body") for e in left["messages"]["chunk"]]


async def test_room_initial_sync_peeks_into_world_readable_rooms(api: Api) -> None:
    """A non-member reads a world_readable room's initialSync (spec "Peeking"; Sytest
    30rooms/30history-visibility); history from before it became readable stays hidden,
    and other rooms stay closed."""
    alice = await api.register("alice")
    carol = await api.register("carol")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    await send_text(api, alice, room_id, "private", "t1")
    r = await api.get(f"/rooms/{room_id}/initialSync", token=carol.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "world_readable"},
        token=alice.access_token,
    )
    assert r.status == 200
    await send_text(api, alice, room_id, "public", "t2")
    body = await get_ok(api, f"/rooms/{room_id}/initialSync", carol)
    assert body["room_id"] == room_id and {"start", "end"} <= set(body["messages"])
    assert [(e["type"], e["content"].get("body")) for e in body["messages"]["chunk"]] == [
        ("m.room.history_visibility", None),
        ("m.room.message", "public"),
    ]
    assert any(e["type"] == "m.room.create" for e in body["state"])


async def test_events_peeks_into_a_world_readable_room(api: Api) -> None:
    """GET /events?room_id= for a world_readable room the user has not joined (spec
    "Peeking"; Sytest SYN-606): a long-poll that wakes on the room's events."""
    alice = await api.register("alice")
    guest = await api.register_guest()
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "world_readable"},
        token=alice.access_token,
    )
    assert r.status == 200
    start = await get_ok(api, "/events", guest, timeout="0", room_id=room_id)
    poll = asyncio.ensure_future(
        get_ok(api, "/events", guest, timeout="30000", room_id=room_id, **{"from": start["end"]})
    )
    await asyncio.sleep(0)
    await send_text(api, alice, room_id, "mice", "t1")
    woke = await asyncio.wait_for(poll, 60)
    assert [e["content"].get("body") for e in woke["chunk"]] == ["mice"]
    assert woke["chunk"][0]["room_id"] == room_id
    nothing = await get_ok(
        api, "/events", guest, timeout="0", room_id=room_id, **{"from": woke["end"]}
    )
    assert nothing["chunk"] == []


async def test_events_peek_carries_typing_receipts_and_members_presence(api: Api) -> None:
    """A peek into a world_readable room also streams its typing, its receipts and its
    members' presence (not the presence of users outside the room), and a long-poll
    wakes on each (Sytest 30rooms/30history-visibility "non-joined user can call
    /events on world_readable room")."""
    alice = await api.register("alice")
    outsider = await api.register("outsider")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "world_readable"},
        token=alice.access_token,
    )
    assert r.status == 200
    event_id = await send_text(api, alice, room_id, "mice", "t1")
    start = await get_ok(api, "/events", bob, timeout="0", room_id=room_id)

    async def next_chunk(token: str, act: Any) -> tuple[list[dict[str, Any]], str]:
        poll = asyncio.ensure_future(
            get_ok(api, "/events", bob, timeout="30000", room_id=room_id, **{"from": token})
        )
        await asyncio.sleep(0.05)
        await act()
        woke = await asyncio.wait_for(poll, 60)
        return woke["chunk"], woke["end"]

    async def presence() -> None:
        for user in (outsider, alice):
            r = await api.put(
                f"/presence/{user.user_id}/status",
                {"presence": "online", "status_msg": "lemurs"},
                token=user.access_token,
            )
            assert r.status == 200

    chunk, token = await next_chunk(start["end"], presence)
    assert chunk and all(e["type"] == "m.presence" for e in chunk)
    assert {e["content"]["user_id"] for e in chunk} == {alice.user_id}

    async def receipt() -> None:
        r = await api.post(
            f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice.access_token
        )
        assert r.status == 200

    chunk, token = await next_chunk(token, receipt)
    assert [e["type"] for e in chunk] == ["m.receipt"]
    assert alice.user_id in chunk[0]["content"][event_id]["m.read"]
    assert chunk[0]["room_id"] == room_id

    async def typing() -> None:
        r = await api.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 30000},
            token=alice.access_token,
        )
        assert r.status == 200

    chunk, token = await next_chunk(token, typing)
    assert [e["type"] for e in chunk] == ["m.typing"]
    assert chunk[0]["content"]["user_ids"] == [alice.user_id]
    nothing = await get_ok(api, "/events", bob, timeout="0", room_id=room_id, **{"from": token})
    assert nothing["chunk"] == []
