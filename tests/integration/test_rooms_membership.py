"""Membership and permission refusals over real HTTP."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


async def send_text(api: Api, user: User, room_id: str, text: str, txn: str) -> str:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": text},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    event_id: str = r.body["event_id"]
    return event_id


async def test_member_without_power_cannot_change_power_levels_or_topic(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    r = await api.post(f"/join/{room_id}", {}, token=bob.access_token)
    assert r.status == 200 and r.body["room_id"] == room_id
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.topic", {"topic": "bob's"}, token=bob.access_token
    )
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    assert r.body["error"]
    r = await api.get(f"/rooms/{room_id}/state/m.room.power_levels", token=bob.access_token)
    levels = r.body
    levels["users"][bob.user_id] = 100
    r = await api.put(f"/rooms/{room_id}/state/m.room.power_levels", levels, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    # Nothing changed.
    r = await api.get(f"/rooms/{room_id}/state/m.room.power_levels", token=alice.access_token)
    assert bob.user_id not in r.body["users"]
    r = await api.get(f"/rooms/{room_id}/state/m.room.topic", token=alice.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # The creator can.
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.topic", {"topic": "alice's"}, token=alice.access_token
    )
    assert r.status == 200


async def test_ban_kick_leave_invite_flow(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await create_room(api, alice)  # private_chat: invite only
    r = await api.post(f"/join/{room_id}", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{room_id}/join", {}, token=bob.access_token)
    assert r.status == 200, r.body
    # bob has no power to kick carol or ban alice
    r = await api.post(f"/rooms/{room_id}/ban", {"user_id": alice.user_id}, token=bob.access_token)
    assert r.status == 403
    r = await api.post(
        f"/rooms/{room_id}/ban",
        {"user_id": bob.user_id, "reason": "spam"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{room_id}/join", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get(
        f"/rooms/{room_id}/state/m.room.member/{bob.user_id}", token=alice.access_token
    )
    assert r.body["membership"] == "ban" and r.body["reason"] == "spam"
    r = await api.post(
        f"/rooms/{room_id}/unban", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200
    r = await api.get(
        f"/rooms/{room_id}/members", token=alice.access_token, params={"membership": "leave"}
    )
    assert [e["state_key"] for e in r.body["chunk"]] == [bob.user_id]
    # kick carol who is not in the room: refused
    r = await api.post(
        f"/rooms/{room_id}/kick", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert r.status == 403


async def test_user_who_left_cannot_send_and_forget(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    await send_text(api, bob, room_id, "hi", "t1")
    r = await api.post(f"/rooms/{room_id}/forget", {}, token=bob.access_token)
    assert r.status == 400
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t2",
        {"msgtype": "m.text", "body": "still here?"},
        token=bob.access_token,
    )
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get("/joined_rooms", token=bob.access_token)
    assert r.body["joined_rooms"] == []
    r = await api.post(f"/rooms/{room_id}/forget", {}, token=bob.access_token)
    assert r.status == 200
    r = await api.get(f"/rooms/{room_id}/joined_members", token=alice.access_token)
    assert list(r.body["joined"]) == [alice.user_id]


async def test_knock_then_invite(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(
        api, alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    r = await api.post(f"/knock/{room_id}", {"reason": "let me in"}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.get(
        f"/rooms/{room_id}/members", token=alice.access_token, params={"membership": "knock"}
    )
    assert [e["state_key"] for e in r.body["chunk"]] == [bob.user_id]
    r = await api.get("/sync", token=bob.access_token)
    knock = r.body["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert {
        "type": "m.room.join_rules",
        "state_key": "",
        "content": {"join_rule": "knock"},
        "sender": alice.user_id,
    } in knock
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200


async def test_invite_on_create_is_direct_and_alias(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post(
        "/createRoom",
        {
            "invite": [bob.user_id],
            "is_direct": True,
            "room_alias_name": "town",
            "preset": "trusted_private_chat",
        },
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api.get("/directory/room/%23town:localhost", token=bob.access_token)
    assert r.status == 200 and r.body["room_id"] == room_id
    r = await api.post("/createRoom", {"room_alias_name": "town"}, token=bob.access_token)
    assert r.status == 400 and r.errcode == "M_ROOM_IN_USE"
    r = await api.get("/sync", token=bob.access_token)
    invite = r.body["rooms"]["invite"][room_id]["invite_state"]["events"]
    mine = [e for e in invite if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert mine[0]["content"]["membership"] == "invite"
    assert mine[0]["content"]["is_direct"] is True
    r = await api.post("/join/%23town:localhost", {}, token=bob.access_token)
    assert r.status == 200 and r.body["room_id"] == room_id
    r = await api.get(f"/rooms/{room_id}/aliases", token=bob.access_token)
    assert r.body == {"aliases": ["#town:localhost"]}
    r = await api.delete("/directory/room/%23town:localhost", token=bob.access_token)
    assert r.status == 200  # trusted_private_chat: invitees are creators/admins
    r = await api.get("/directory/room/%23town:localhost", token=bob.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"


async def test_encryption_cannot_be_turned_off(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    tok = alice.access_token
    on = {"algorithm": "m.megolm.v1.aes-sha2"}
    r = await api.put(f"/rooms/{room_id}/state/m.room.encryption", on, token=tok)
    assert r.status == 200
    for content in ({}, {"algorithm": "none"}):
        r = await api.put(f"/rooms/{room_id}/state/m.room.encryption", content, token=tok)
        assert r.status == 403 and r.errcode == "M_FORBIDDEN"
        assert "downgrade" in r.body["error"]
    r = await api.get(f"/rooms/{room_id}/state/m.room.encryption", token=tok)
    assert r.body == on


async def test_profile_change_updates_member_events(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    r = await api.put(
        f"/profile/{alice.user_id}/displayname",
        {"displayname": "Alice A."},
        token=alice.access_token,
    )
    assert r.status == 200
    r = await api.get(
        f"/rooms/{room_id}/state/m.room.member/{alice.user_id}", token=alice.access_token
    )
    assert r.body["displayname"] == "Alice A." and r.body["membership"] == "join"


async def test_bad_requests(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.post("/createRoom", {"invite": "nope"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.post("/createRoom", {"preset": "weird"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.post("/join/not-a-room", {}, token=alice.access_token)
    assert r.status == 400
    r = await api.post("/join/!nope:localhost", {}, token=alice.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    room_id = await create_room(api, alice)
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/x", data=b"[1]", token=alice.access_token
    )
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/y", {"body": "x" * 70000}, token=alice.access_token
    )
    assert r.status == 413 and r.errcode == "M_TOO_LARGE"
    r = await api.get(f"/rooms/{room_id}/messages", token=alice.access_token, params={"from": "zz"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_members_at_a_past_position(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    r = await api.get("/sync", token=alice.access_token)
    before_bob = r.body["next_batch"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get(f"/rooms/{room_id}/members", token=alice.access_token)
    assert [e["state_key"] for e in r.body["chunk"]] == [alice.user_id, bob.user_id]
    r = await api.get(
        f"/rooms/{room_id}/members", token=alice.access_token, params={"at": before_bob}
    )
    assert [e["state_key"] for e in r.body["chunk"]] == [alice.user_id]
    r = await api.get(
        f"/rooms/{room_id}/members",
        token=alice.access_token,
        params={"not_membership": "join"},
    )
    assert r.body["chunk"] == []


async def test_reject_invite_after_everyone_left(make_server: ServerFactory) -> None:
    """Sytest 30rooms/10leave: with federation on, rejecting an invite to this server's own
    room, which all its members have left, is a local leave (no server to ask)."""
    server = await make_server(federated=True)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room_id = await create_room(api, alice)
        r = await api.post(
            f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
        )
        assert r.status == 200
        assert (
            await api.post(f"/rooms/{room_id}/leave", {}, token=alice.access_token)
        ).status == 200
        r = await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)
        assert r.status == 200, r.body
        r = await api.get("/sync", token=bob.access_token)
        assert room_id not in r.body["rooms"]["invite"]
