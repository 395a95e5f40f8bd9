"""Hostile EDUs: a server speaks only for its own users, and only in rooms they are in.
To-device and device-list EDUs for users the peer does not host, typing and receipts
for rooms it is not in: each refused, logged once with the origin, nothing changed."""

from __future__ import annotations

from typing import Any

from federation.device_lists import RemoteDeviceLists
from tests.federation.fedutil import inbox, relay
from tests.federation.hostile.support import Arena
from tests.federation.rooms_support import q


def device_lists(arena: Arena) -> RemoteDeviceLists:
    return relay(arena.hs).receiver.edus.device_lists


async def assert_edu_refused(arena: Arena, edu: dict[str, Any]) -> str:
    before = await arena.snapshot()
    receipts_before = await arena.hs.hs.receipts.current_position()
    arena.clear_logs()
    reply = await arena.send([], [edu])
    assert (reply.status, reply.body) == (200, {"pdus": {}})
    assert await arena.snapshot() == before
    assert await arena.hs.hs.receipts.current_position() == receipts_before
    assert arena.hs.hs.typing.typing_users(arena.room_id) == []
    line = arena.assert_logged_once()
    assert edu["edu_type"] in line
    return line


async def private_room(arena: Arena) -> str:
    r = await arena.api.post(
        "/createRoom", {"preset": "private_chat"}, token=arena.alice.access_token
    )
    assert r.status == 200, r.body
    return str(r.body["room_id"])


def to_device(sender: str, to_user: str, to_device_id: str, body: str) -> dict[str, Any]:
    return {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": sender,
            "type": "m.room_key_request",
            "message_id": "m-" + body[-6:],
            "messages": {to_user: {to_device_id: {"body": body}}},
        },
    }


async def test_to_device_from_a_user_the_peer_does_not_host(arena: Arena) -> None:
    alice = arena.alice
    for sender in (alice.user_id, "@eve:elsewhere.example"):
        await assert_edu_refused(
            arena, to_device(sender, alice.user_id, alice.device_id, arena.secret)
        )
        assert await inbox(arena.hs, alice) == []
    # The control: from the peer's own user it is delivered.
    edu = to_device(arena.peer.user("mallory"), alice.user_id, alice.device_id, "fine-123456")
    assert (await arena.send([], [edu])).status == 200
    assert [m["content"] for m in await inbox(arena.hs, alice)] == [{"body": "fine-123456"}]


async def test_device_list_update_for_a_user_the_peer_does_not_host(arena: Arena) -> None:
    for user_id in (arena.alice.user_id, "@eve:elsewhere.example"):
        edu = {
            "edu_type": "m.device_list_update",
            "content": {
                "user_id": user_id,
                "device_id": "EVIL",
                "device_display_name": arena.secret,
                "stream_id": 7,
                "prev_id": [],
                "keys": {"user_id": user_id, "device_id": "EVIL", "note": arena.secret},
            },
        }
        await assert_edu_refused(arena, edu)
        store = device_lists(arena).store
        assert await store.stream_ids([user_id]) == {}
        assert await store.devices_of([user_id]) == []


async def test_signing_key_update_for_a_user_the_peer_does_not_host(arena: Arena) -> None:
    user_id = "@eve:elsewhere.example"
    key = {"user_id": user_id, "usage": ["master"], "keys": {"ed25519:x": arena.secret}}
    edu = {"edu_type": "m.signing_key_update", "content": {"user_id": user_id, "master_key": key}}
    await assert_edu_refused(arena, edu)
    assert await device_lists(arena).store.stream_ids([user_id]) == {}


async def test_typing_in_a_room_the_peer_is_not_in(arena: Arena) -> None:
    other = await private_room(arena)
    mallory = arena.peer.user("mallory")
    edu = {
        "edu_type": "m.typing",
        "content": {"room_id": other, "user_id": mallory, "typing": True},
    }
    await assert_edu_refused(arena, edu)
    assert arena.hs.hs.typing.typing_users(other) == []
    # Nor for a user of another server in the room the peer is in.
    edu = {
        "edu_type": "m.typing",
        "content": {"room_id": arena.room_id, "user_id": arena.alice.user_id, "typing": True},
    }
    await assert_edu_refused(arena, edu)
    # The control: the peer's own user, in its room, is shown typing and nothing is logged.
    arena.clear_logs()
    edu = {
        "edu_type": "m.typing",
        "content": {"room_id": arena.room_id, "user_id": mallory, "typing": True},
    }
    await arena.send([], [edu])
    assert arena.hs.hs.typing.typing_users(arena.room_id) == [mallory]
    assert arena.lines_naming(arena.peer.server_name) == []


async def test_receipts_for_a_room_the_peer_is_not_in(arena: Arena) -> None:
    other = await private_room(arena)
    r = await arena.api.get(
        f"/rooms/{q(other)}/messages?dir=b&limit=1", token=arena.alice.access_token
    )
    event_id = r.body["chunk"][0]["event_id"]
    mallory = arena.peer.user("mallory")
    receipt = {"event_ids": [event_id], "data": {"ts": 1, "note": arena.secret}}
    edu = {"edu_type": "m.receipt", "content": {other: {"m.read": {mallory: receipt}}}}
    await assert_edu_refused(arena, edu)
    # Many refused receipts in one EDU still make one line.
    content = {
        other: {"m.read": {mallory: receipt, arena.alice.user_id: receipt}},
        arena.room_id: {"m.read": {arena.alice.user_id: receipt}},
    }
    line = await assert_edu_refused(arena, {"edu_type": "m.receipt", "content": content})
    assert "not of the origin server" in line and "not in the room" in line


async def test_presence_for_users_the_peer_does_not_host(arena: Arena) -> None:
    push = [{"user_id": arena.alice.user_id, "presence": "offline", "status_msg": arena.secret}]
    await assert_edu_refused(arena, {"edu_type": "m.presence", "content": {"push": push}})
    r = await arena.api.get(
        f"/presence/{q(arena.alice.user_id)}/status", token=arena.alice.access_token
    )
    assert r.body.get("status_msg") != arena.secret
