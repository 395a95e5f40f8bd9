"""/sync, /messages, /context, history visibility and redaction over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


def timeline(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][room_id]["timeline"]["events"]
    return events


async def test_sync_long_poll_wakes_on_message(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token)
    since = r.body["next_batch"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        await send_text(api, alice, room_id, "wake up", "w1")

    task = asyncio.create_task(later())
    started = time.monotonic()
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "timeout": "10000"})
    elapsed = time.monotonic() - started
    await task
    assert r.status == 200
    assert elapsed < 3.0, elapsed  # woken by the event, long before the 10 s timeout
    events = timeline(r.body, room_id)
    assert [e["content"].get("body") for e in events] == ["wake up"]
    assert "room_id" not in events[0]
    # Nothing new: times out with an empty answer.
    started = time.monotonic()
    r2 = await api.get(
        "/sync", token=bob.access_token, params={"since": r.body["next_batch"], "timeout": "300"}
    )
    assert time.monotonic() - started >= 0.25
    assert r2.body["rooms"]["join"] == {}
    assert r2.body["next_batch"] == r.body["next_batch"]


async def test_thirty_messages_in_order_via_sync_and_messages(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token)
    since = r.body["next_batch"]
    sent = [await send_text(api, alice, room_id, f"m{i}", f"t{i}") for i in range(30)]
    flt = json.dumps({"room": {"timeline": {"limit": 50}}})
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    events = timeline(r.body, room_id)
    assert [e["event_id"] for e in events] == sent
    assert [e["content"]["body"] for e in events] == [f"m{i}" for i in range(30)]
    assert r.body["rooms"]["join"][room_id]["timeline"]["limited"] is False

    # A small timeline is limited; its prev_batch paginates back through the rest.
    flt = json.dumps({"room": {"timeline": {"limit": 5}}})
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    room = r.body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert [e["event_id"] for e in room["timeline"]["events"]] == sent[-5:]
    seen: list[str] = []
    token = room["timeline"]["prev_batch"]
    while True:
        r = await api.get(
            f"/rooms/{room_id}/messages",
            token=bob.access_token,
            params={"from": token, "dir": "b", "limit": "7"},
        )
        assert r.status == 200, r.body
        seen.extend(e["event_id"] for e in r.body["chunk"])
        if "end" not in r.body:
            break
        token = r.body["end"]
    msgs = [e for e in seen if e in sent]
    assert msgs == list(reversed(sent[:-5]))
    # Forwards from the start, filtered by type.
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=bob.access_token,
        params={"dir": "f", "limit": "40", "filter": json.dumps({"types": ["m.room.message"]})},
    )
    assert [e["event_id"] for e in r.body["chunk"]] == sent


async def test_initial_sync_state_and_leave(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat", name="Lobby")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token)
    room = r.body["rooms"]["join"][room_id]
    all_events = room["state"]["events"] + room["timeline"]["events"]
    names = [e["content"] for e in all_events if e["type"] == "m.room.name"]
    assert names == [{"name": "Lobby"}]
    since = r.body["next_batch"]
    await api.post(f"/rooms/{room_id}/kick", {"user_id": bob.user_id}, token=alice.access_token)
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    left = r.body["rooms"]["leave"][room_id]["timeline"]["events"]
    assert left[-1]["type"] == "m.room.member" and left[-1]["content"]["membership"] == "leave"
    assert room_id not in r.body["rooms"]["join"]


async def test_non_member_cannot_read_joined_visibility_room(api: Api) -> None:
    alice = await api.register("alice")
    eve = await api.register("eve")
    room_id = await create_room(
        api,
        alice,
        preset="public_chat",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ],
    )
    secret = await send_text(api, alice, room_id, "before eve", "s1")
    r = await api.get(f"/rooms/{room_id}/messages", token=eve.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get(f"/rooms/{room_id}/event/{secret}", token=eve.access_token)
    assert r.status in (403, 404)
    # Once joined, eve still does not see what came before her join.
    assert (await api.post(f"/join/{room_id}", {}, token=eve.access_token)).status == 200
    after = await send_text(api, alice, room_id, "after eve", "s2")
    r = await api.get(f"/rooms/{room_id}/messages", token=eve.access_token, params={"limit": "50"})
    ids = [e["event_id"] for e in r.body["chunk"]]
    assert after in ids and secret not in ids
    r = await api.get(f"/rooms/{room_id}/event/{secret}", token=eve.access_token)
    assert r.status == 404
    r = await api.get(f"/rooms/{room_id}/context/{after}", token=eve.access_token)
    assert r.status == 200 and r.body["event"]["event_id"] == after
    assert secret not in [e["event_id"] for e in r.body["events_before"]]


async def test_redaction_served_redacted(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    alices = await send_text(api, alice, room_id, "oops", "r1")
    bobs = await send_text(api, bob, room_id, "mine", "r2")
    # bob (no power) cannot redact alice's event; he can redact his own
    r = await api.put(f"/rooms/{room_id}/redact/{alices}/x1", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.put(
        f"/rooms/{room_id}/redact/{bobs}/x2", {"reason": "typo"}, token=bob.access_token
    )
    assert r.status == 200
    redaction_id = r.body["event_id"]
    r2 = await api.put(
        f"/rooms/{room_id}/redact/{bobs}/x2", {"reason": "typo"}, token=bob.access_token
    )
    assert r2.body["event_id"] == redaction_id
    r = await api.get(f"/rooms/{room_id}/event/{bobs}", token=alice.access_token)
    assert r.body["content"] == {}
    assert r.body["unsigned"]["redacted_because"]["event_id"] == redaction_id
    r = await api.get(f"/rooms/{room_id}/event/{alices}", token=alice.access_token)
    assert r.body["content"]["body"] == "oops"
    r = await api.put(f"/rooms/{room_id}/redact/{alices}/x3", {}, token=alice.access_token)
    assert r.status == 200
    r = await api.get(f"/rooms/{room_id}/messages", token=bob.access_token)
    redacted = [e for e in r.body["chunk"] if e["event_id"] in (alices, bobs)]
    assert len(redacted) == 2 and all(e["content"] == {} for e in redacted)


async def test_sync_token_survives_restart(make_server: Any, tmp_path: Any) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
        r = await api.get("/sync", token=alice.access_token)
        since = r.body["next_batch"]
        await send_text(api, alice, room_id, "one", "a1")
    # Restart on the same data directory and database.
    config = server.hs.config
    await server.stop()
    from homeserver.app import start

    again = await start(config)
    try:
        async with Api(again.client_url) as api:
            user = User(alice.user_id, alice.access_token, alice.device_id, alice.password)
            r = await api.get("/sync", token=user.access_token, params={"since": since})
            assert [e["content"].get("body") for e in timeline(r.body, room_id)] == ["one"]
            await send_text(api, user, room_id, "two", "a2")
            r = await api.get("/sync", token=user.access_token, params={"since": since})
            assert [e["content"].get("body") for e in timeline(r.body, room_id)] == ["one", "two"]
    finally:
        await again.stop()


async def test_history_visibility_change_is_seen_by_later_joiners(api: Api) -> None:
    """Spec "History visibility": an m.room.history_visibility event is visible if the
    setting before *or* after it allows (Sytest 30rooms/30history-visibility)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    tok = alice.access_token

    async def send(body: str, txn: str) -> None:
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body},
            token=tok,
        )
        assert r.status == 200

    await send("shared", "t1")
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "joined"},
        token=tok,
    )
    assert r.status == 200
    await send("pre_join", "t2")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    await send("post_join", "t3")
    r = await api.get("/sync", token=bob.access_token)
    last = r.body["rooms"]["join"][room_id]["timeline"]["events"][-4:]
    assert [(e["type"], e["content"].get("body")) for e in last] == [
        ("m.room.message", "shared"),
        ("m.room.history_visibility", None),
        ("m.room.member", None),
        ("m.room.message", "post_join"),
    ]


async def test_current_state_set_while_away_shows_in_the_timeline(api: Api) -> None:
    """Sytest 31sync/06state: with "joined" history, a member who left and rejoined still
    gets, in the timeline, state events that are current (a join made while away)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "joined"},
        token=alice.access_token,
    )
    assert r.status == 200
    first = await api.get("/sync", token=bob.access_token)
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token, params={"since": first.body["next_batch"]})
    timeline = r.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == carol.user_id for e in timeline)
