"""Rooms over real HTTP: creation in each room version, sending, state, refusals."""

from __future__ import annotations

import pytest

from tests.helpers import Api, User

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


async def create_room(api: Api, user: User, **body: object) -> str:
    r = await api.post("/createRoom", body, token=user.access_token)
    assert r.status == 200, r.body
    room_id: str = r.body["room_id"]
    return room_id


@pytest.mark.parametrize("version", [str(n) for n in range(1, 13)])
async def test_create_room_each_version(api: Api, version: str) -> None:
    alice = await api.register("alice")
    room_id = await create_room(
        api, alice, room_version=version, name="Ten", topic="about", preset="public_chat"
    )
    tok = alice.access_token
    r = await api.get(f"/rooms/{room_id}/state/m.room.create", token=tok)
    assert r.status == 200, r.body
    assert r.body["room_version"] == version
    if int(version) <= 10:
        assert r.body["creator"] == alice.user_id
    else:
        assert "creator" not in r.body
    r = await api.get(f"/rooms/{room_id}/state/m.room.name/", token=tok)
    assert r.body == {"name": "Ten"}
    r = await api.get(f"/rooms/{room_id}/state/m.room.join_rules", token=tok)
    assert r.body == {"join_rule": "public"}
    r = await api.get(f"/rooms/{room_id}/state", token=tok)
    types = sorted(e["type"] for e in r.body)
    assert types == sorted(
        [
            "m.room.create",
            "m.room.member",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.history_visibility",
            # no m.room.guest_access: public_chat's "forbidden" is the default
            "m.room.name",
            "m.room.topic",
        ]
    )
    r = await api.get(f"/rooms/{room_id}/state/m.room.power_levels", token=tok)
    if version == "12":
        assert alice.user_id not in r.body["users"]
    else:
        assert r.body["users"][alice.user_id] == 100
    r = await api.get("/joined_rooms", token=tok)
    assert r.body == {"joined_rooms": [room_id]}
    if version == "12":
        create = next(
            e
            for e in (await api.get(f"/rooms/{room_id}/state", token=tok)).body
            if e["type"] == "m.room.create"
        )
        assert room_id == "!" + create["event_id"][1:]


async def test_unsupported_room_version(api: Api) -> None:
    alice = await api.register("alice")
    for version in ("13", "0", "1.0", "org.example.unknown"):
        r = await api.post("/createRoom", {"room_version": version}, token=alice.access_token)
        assert r.status == 400 and r.errcode == "M_UNSUPPORTED_ROOM_VERSION", version


async def test_send_and_idempotent_txn(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    path = f"/rooms/{room_id}/send/m.room.message/txn1"
    body = {"msgtype": "m.text", "body": "hello"}
    r1 = await api.put(path, body, token=alice.access_token)
    assert r1.status == 200, r1.body
    r2 = await api.put(path, body, token=alice.access_token)
    assert r2.body["event_id"] == r1.body["event_id"]
    r3 = await api.put(f"/rooms/{room_id}/send/m.room.message/txn2", body, token=alice.access_token)
    assert r3.body["event_id"] != r1.body["event_id"]
    r = await api.get(f"/rooms/{room_id}/event/{r1.body['event_id']}", token=alice.access_token)
    assert r.status == 200
    assert r.body["content"] == body
    assert r.body["unsigned"]["transaction_id"] == "txn1"
    r = await api.get(
        f"/rooms/{room_id}/messages", token=alice.access_token, params={"dir": "b", "limit": "5"}
    )
    bodies = [e["content"].get("body") for e in r.body["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["hello", "hello"]


async def test_same_state_twice_and_join_twice_send_nothing(api: Api) -> None:
    """Sytest 30rooms/01state: setting the same state again, or joining again, answers the
    current event instead of sending a new one; other content is a new event."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    tok = alice.access_token
    path = f"/rooms/{room}/state/m.room.topic/"
    first = (await api.put(path, {"topic": "t"}, token=tok)).body["event_id"]
    again = await api.put(path, {"topic": "t"}, token=tok)
    assert again.status == 200 and again.body["event_id"] == first
    other = await api.put(path, {"topic": "u"}, token=tok)
    assert other.body["event_id"] != first
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    before = await api.get(f"/rooms/{room}/state/m.room.member/{bob.user_id}", token=tok)
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    r = await api.get(f"/rooms/{room}/messages", token=tok, params={"dir": "b", "limit": "2"})
    joins = [e for e in r.body["chunk"] if e["type"] == "m.room.member"]
    assert len(joins) == 1 and joins[0]["content"] == before.body


async def test_redacting_an_event_of_another_room_is_refused(api: Api) -> None:
    alice = await api.register("alice")
    one = await create_room(api, alice)
    two = await create_room(api, alice)
    r = await api.put(
        f"/rooms/{one}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "x"},
        token=alice.access_token,
    )
    event_id = r.body["event_id"]
    r = await api.put(f"/rooms/{two}/redact/{event_id}/r1", {}, token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.get(f"/rooms/{one}/event/{event_id}", token=alice.access_token)
    assert r.body["content"] == {"msgtype": "m.text", "body": "x"}


async def test_post_send_and_post_redact_without_txn(api: Api) -> None:
    """The early POST forms (no transaction id), still used by Sytest and old clients."""
    alice = await api.register("alice")
    room = await create_room(api, alice)
    tok = alice.access_token
    msg = {"msgtype": "m.text", "body": "hi"}
    one = await api.post(f"/rooms/{room}/send/m.room.message", msg, token=tok)
    two = await api.post(f"/rooms/{room}/send/m.room.message", msg, token=tok)
    assert one.status == two.status == 200
    assert one.body["event_id"] != two.body["event_id"]  # no txn id: two events
    r = await api.post(f"/rooms/{room}/redact/{one.body['event_id']}", {}, token=tok)
    assert r.status == 200 and r.body["event_id"].startswith("$")
    r = await api.get(f"/rooms/{room}/event/{one.body['event_id']}", token=tok)
    assert r.body["content"] == {}
