"""Typing, receipts and read markers over real HTTP (both engines), in real rooms:
membership and events come from the room service, m.fully_read goes to room
account data.
"""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from tests.helpers import Api, User
from tests.room_facts import event_id


async def setup(api: Api) -> tuple[str, User, User]:
    """A private room where alice is joined and bob is not."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    return r.body["room_id"], alice, bob


async def send(api: Api, room_id: str, user: User, txn: str) -> str:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": txn},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    event: str = r.body["event_id"]
    return event


async def fully_read(api: Api, room_id: str, user: User) -> Any:
    """The user's m.fully_read room account data, or None if there is none."""
    r = await api.get(
        f"/user/{user.user_id}/rooms/{room_id}/account_data/m.fully_read",
        token=user.access_token,
    )
    if r.status == 404:
        return None
    assert r.status == 200, r.body
    return r.body


async def test_real_rooms_decide_membership(server: RunningServer, api: Api) -> None:
    """With the room service wired in: joined members may type and send receipts."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "hi"},
        token=alice.access_token,
    )
    event = r.body["event_id"]
    typing_bob = f"/rooms/{room_id}/typing/{bob.user_id}"
    r = await api.put(typing_bob, {"typing": True, "timeout": 1000}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{event}", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.put(typing_bob, {"typing": True, "timeout": 1000}, token=bob.access_token)
    assert r.status == 200
    assert server.hs.typing.typing_users(room_id) == [bob.user_id]
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{event}", {}, token=bob.access_token)
    assert r.status == 200
    r = await api.post(
        f"/rooms/{room_id}/receipt/m.read/{event_id('elsewhere')}", {}, token=bob.access_token
    )
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.post(
        f"/rooms/{room_id}/read_markers", {"m.fully_read": event}, token=bob.access_token
    )
    assert r.status == 200
    r = await api.get(
        f"/user/{bob.user_id}/rooms/{room_id}/account_data/m.fully_read", token=bob.access_token
    )
    assert r.status == 200 and r.body == {"event_id": event}


async def test_typing(server: RunningServer, api: Api) -> None:
    room, alice, bob = await setup(api)
    path = f"/rooms/{room}/typing/{alice.user_id}"
    r = await api.put(path, {"typing": True, "timeout": 30000}, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    typing = server.hs.typing
    assert typing.typing_for_rooms([room], 0) == {room: {"user_ids": [alice.user_id]}}
    r = await api.put(path, {"typing": False}, token=alice.access_token)
    assert r.status == 200
    assert typing.typing_users(room) == [] and typing.position == 2

    # someone else's typing, not joined, bad bodies: refused, nothing changes
    r = await api.put(path, {"typing": True, "timeout": 1000}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.put(
        f"/rooms/{room}/typing/{bob.user_id}",
        {"typing": True, "timeout": 1000},
        token=bob.access_token,
    )
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    for body in ({}, {"typing": "yes"}, {"typing": True, "timeout": "soon"}):
        r = await api.put(path, body, token=alice.access_token)
        assert r.status == 400 and r.errcode == "M_BAD_JSON", body
    r = await api.put(path, {"typing": True}, token=None)
    assert r.status == 401
    assert typing.typing_users(room) == [] and typing.position == 2


async def test_receipts(server: RunningServer, api: Api) -> None:
    room, alice, bob = await setup(api)
    e1 = await send(api, room, alice, "e1")
    tok = alice.access_token
    r = await api.post(f"/rooms/{room}/receipt/m.read/{e1}", {}, token=tok)
    assert r.status == 200 and r.body == {}
    r = await api.post(f"/rooms/{room}/receipt/m.read/{e1}", {"thread_id": "main"}, token=tok)
    assert r.status == 200
    r = await api.post(f"/rooms/{room}/receipt/m.read.private/{e1}", token=tok)  # no body
    assert r.status == 200
    receipts = server.hs.receipts
    got = await receipts.receipts_since([room], 0, alice.user_id)
    entry = got[room][e1]
    assert set(entry) == {"m.read", "m.read.private"}
    assert entry["m.read"][alice.user_id]["thread_id"] == "main"  # later one of the two
    assert isinstance(entry["m.read.private"][alice.user_id]["ts"], int)
    assert "m.read.private" not in (await receipts.receipts_since([room], 0, bob.user_id))[room][e1]
    assert await receipts.current_position() == 3

    refusals = [
        (f"/rooms/{room}/receipt/m.bogus/{e1}", {}, alice, 400, "M_INVALID_PARAM"),
        (f"/rooms/{room}/receipt/m.read/{e1}", {"thread_id": ""}, alice, 400, "M_INVALID_PARAM"),
        (f"/rooms/{room}/receipt/m.read/{e1}", {"thread_id": 7}, alice, 400, "M_INVALID_PARAM"),
        (f"/rooms/{room}/receipt/m.read/{e1}", {"thread_id": "x"}, alice, 400, "M_INVALID_PARAM"),
        (f"/rooms/{room}/receipt/m.read/notanevent", {}, alice, 400, "M_INVALID_PARAM"),
        (f"/rooms/{room}/receipt/m.read/{event_id('nope')}", {}, alice, 404, "M_NOT_FOUND"),
        (f"/rooms/{room}/receipt/m.read/{e1}", {}, bob, 403, "M_FORBIDDEN"),
        (
            f"/rooms/{room}/receipt/m.fully_read/{e1}",
            {"thread_id": "main"},
            alice,
            400,
            "M_INVALID_PARAM",
        ),
    ]
    for path, body, user, status, errcode in refusals:
        r = await api.post(path, body, token=user.access_token)
        assert (r.status, r.errcode) == (status, errcode), (path, body)
    r = await api.post(f"/rooms/{room}/receipt/m.read/{e1}", data=b"[1]", token=tok)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    assert await receipts.current_position() == 3
    assert await fully_read(api, room, alice) is None


async def test_read_markers(server: RunningServer, api: Api) -> None:
    room, alice, bob = await setup(api)
    e1 = await send(api, room, alice, "e1")
    e2 = await send(api, room, alice, "e2")
    path = f"/rooms/{room}/read_markers"
    r = await api.post(path, {"m.fully_read": e2, "m.read": e1}, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    assert await fully_read(api, room, alice) == {"event_id": e2}
    got = await server.hs.receipts.receipts_since([room], 0, bob.user_id)
    assert list(got[room]) == [e1] and list(got[room][e1]["m.read"]) == [alice.user_id]

    r = await api.post(f"/rooms/{room}/receipt/m.fully_read/{e1}", {}, token=alice.access_token)
    assert r.status == 200
    assert await fully_read(api, room, alice) == {"event_id": e1}

    position = await server.hs.receipts.current_position()
    r = await api.post(path, {"m.fully_read": e2}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(path, {"m.read": "bad"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.post(path, {"m.read": 5}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.post(
        path, {"m.fully_read": e2, "m.read": event_id("nope")}, token=alice.access_token
    )
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    assert await fully_read(api, room, alice) == {"event_id": e1}
    assert await server.hs.receipts.current_position() == position
