"""``GET /members`` and ``GET /state`` serve each event's client JSON encoded once
(homeserver/rooms/client_json.py): the answer must equal what the serializer builds,
per spec (client-server "GET /rooms/{roomId}/members", "GET /rooms/{roomId}/state"),
with ``unsigned.age`` current, and must follow every change of what it was built from:
the event redacted, and the state event it replaced (``unsigned.prev_content``)
redacted after the head was kept.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from homeserver.app import RunningServer
from homeserver.sync.model import SyncRequest
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


def without_age(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with ``unsigned.age`` (the one part that moves with the clock) taken
    out, so two answers built a moment apart compare equal."""
    out = []
    for e in events:
        unsigned = {k: v for k, v in e["unsigned"].items() if k != "age"}
        redacted_because = unsigned.get("redacted_because")
        if isinstance(redacted_because, dict):
            unsigned["redacted_because"] = {
                **redacted_because,
                "unsigned": {k: v for k, v in redacted_because["unsigned"].items() if k != "age"},
            }
        out.append({**e, "unsigned": unsigned})
    return out


async def room_with_history(api: Api) -> tuple[str, User, User]:
    """A room whose state holds a replaced member event (prev_content), a redacted
    topic and a few joined members."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat", topic="first topic")
    await ok(await api.post(f"/rooms/{room}/join", {}, token=bob.access_token))
    await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": "Bobby"},
            token=bob.access_token,
        )
    )
    state = await ok(await api.get(f"/rooms/{room}/state", token=alice.access_token))
    topic_id = next(e["event_id"] for e in state if e["type"] == "m.room.topic")
    await ok(await api.put(f"/rooms/{room}/redact/{topic_id}/t1", {}, token=alice.access_token))
    return room, alice, bob


async def test_state_and_members_equal_the_serializer(server: RunningServer, api: Api) -> None:
    room, alice, bob = await room_with_history(api)
    reader = server.hs.rooms_area.reader
    for _ in range(2):  # built, then served from what the first answer kept
        state = await ok(await api.get(f"/rooms/{room}/state", token=alice.access_token))
        built = await reader.state(alice.user_id, room)
        key = lambda e: (e["type"], e["state_key"])  # noqa: E731
        assert without_age(sorted(state, key=key)) == without_age(sorted(built, key=key))
        assert all(isinstance(e["unsigned"]["age"], int) for e in state)
        topic = next(e for e in state if e["type"] == "m.room.topic")
        assert topic["content"] == {} and "redacted_because" in topic["unsigned"]
        bobs = next(e for e in state if e.get("state_key") == bob.user_id)
        assert bobs["content"]["displayname"] == "Bobby"
        prev = bobs["unsigned"]["prev_content"]
        assert prev["membership"] == "join" and prev.get("displayname") != "Bobby"
        members = await ok(await api.get(f"/rooms/{room}/members", token=bob.access_token))
        chunk = members["chunk"]
        assert [e["state_key"] for e in chunk] == sorted([alice.user_id, bob.user_id])
        assert without_age(chunk) == without_age(
            [e for e in sorted(state, key=key) if e["type"] == "m.room.member"]
        )


async def test_sync_state_over_http_equals_the_built_state(server: RunningServer, api: Api) -> None:
    """GET /sync sends a room's state events encoded once per event (``encoded_state``);
    the service builds dicts for everyone else. Both must say the same."""
    room, _alice, bob = await room_with_history(api)
    flt = json.dumps({"room": {"timeline": {"limit": 1}}})
    for _ in range(2):
        reply = await api.get("/sync", token=bob.access_token, params={"filter": flt})
        wire = (await ok(reply))["rooms"]["join"][room]["state"]["events"]
        record = await server.hs.accounts.store.get_user(bob.user_id)
        assert record is not None
        req = SyncRequest(
            user_id=bob.user_id,
            device_id=bob.device_id,
            user_nid=record.user_nid,
            filter_param=flt,
        )
        built = (await server.hs.sync_area.sync.sync(req))["rooms"]["join"][room]["state"]
        key = lambda e: (e["type"], e["state_key"])  # noqa: E731
        assert len(wire) >= 5
        assert without_age(sorted(wire, key=key)) == without_age(sorted(built["events"], key=key))
        topic = next(e for e in wire if e["type"] == "m.room.topic")
        assert "redacted_because" in topic["unsigned"] and "room_id" not in topic


async def test_age_moves_between_answers(api: Api) -> None:
    room, alice, _ = await room_with_history(api)
    first = await ok(await api.get(f"/rooms/{room}/members", token=alice.access_token))
    await asyncio.sleep(0.05)
    second = await ok(await api.get(f"/rooms/{room}/members", token=alice.access_token))
    ages = zip(first["chunk"], second["chunk"], strict=True)
    assert all(b["unsigned"]["age"] >= a["unsigned"]["age"] + 40 for a, b in ages)


async def test_prev_content_follows_a_redaction_of_the_replaced_event(api: Api) -> None:
    """Bob's second member event was served (and its JSON kept) with his first one's
    content as ``prev_content``; once that first event is redacted, the kept JSON is
    stale: the answer must carry the redacted content."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    await ok(await api.post(f"/rooms/{room}/join", {}, token=bob.access_token))
    first = await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": "Old name"},
            token=bob.access_token,
        )
    )
    await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": "New name"},
            token=bob.access_token,
        )
    )

    async def bobs() -> dict[str, Any]:
        members = await ok(await api.get(f"/rooms/{room}/members", token=alice.access_token))
        return next(e for e in members["chunk"] if e["state_key"] == bob.user_id)

    before = await bobs()
    assert before["unsigned"]["prev_content"]["displayname"] == "Old name"
    assert before["unsigned"]["replaces_state"] == first["event_id"]
    await ok(
        await api.put(f"/rooms/{room}/redact/{first['event_id']}/r1", {}, token=alice.access_token)
    )
    after = await bobs()
    assert after["content"]["displayname"] == "New name"
    assert after["unsigned"]["prev_content"] == {"membership": "join"}
    state = await ok(await api.get(f"/rooms/{room}/state", token=alice.access_token))
    in_state = next(e for e in state if e.get("state_key") == bob.user_id)
    assert in_state["unsigned"]["prev_content"] == {"membership": "join"}


async def test_a_redacted_member_event_is_served_redacted(api: Api) -> None:
    """Bob's member event, served once (its JSON kept), is redacted: the next answers
    show the redacted form with ``redacted_because``."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    await ok(await api.post(f"/rooms/{room}/join", {}, token=bob.access_token))
    named = await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": "Bob"},
            token=bob.access_token,
        )
    )
    members = await ok(await api.get(f"/rooms/{room}/members", token=alice.access_token))
    assert any(e["content"].get("displayname") == "Bob" for e in members["chunk"])
    red = await ok(
        await api.put(f"/rooms/{room}/redact/{named['event_id']}/r1", {}, token=alice.access_token)
    )
    for path in ("members", "state"):
        body = await ok(await api.get(f"/rooms/{room}/{path}", token=alice.access_token))
        events = body["chunk"] if path == "members" else body
        bobs = next(e for e in events if e.get("state_key") == bob.user_id)
        assert bobs["content"] == {"membership": "join"}
        assert bobs["unsigned"]["redacted_because"]["event_id"] == red["event_id"]
