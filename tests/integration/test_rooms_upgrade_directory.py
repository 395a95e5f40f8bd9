"""Room upgrades, the room directory, TURN, third-party protocols, guests and
content reports, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory, free_port
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """Guest accounts are off by default; this module's tests use them."""
    return await make_server(registration={"allow_guests": True})


async def state(api: Api, user: User, room_id: str, etype: str) -> Any:
    r = await api.get(f"/rooms/{room_id}/state/{etype}/", token=user.access_token)
    return r.body if r.status == 200 else None


async def test_upgrade_carries_state_aliases_directory_and_tombstones(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(
        api,
        alice,
        room_version="11",
        preset="public_chat",
        name="Old name",
        topic="Old topic",
        room_alias_name="club",
        visibility="public",
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
        ],
    )
    tok = alice.access_token
    assert (await api.post(f"/rooms/{room}/join", {}, token=bob.access_token)).status == 200

    # bob has no power to send the tombstone
    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "12"}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "99"}, token=tok)
    assert r.status == 400 and r.errcode == "M_UNSUPPORTED_ROOM_VERSION"

    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "12"}, token=tok)
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    assert new != room

    create = await state(api, alice, new, "m.room.create")
    assert create["room_version"] == "12"
    assert create["predecessor"]["room_id"] == room
    assert await state(api, alice, new, "m.room.name") == {"name": "Old name"}
    assert (await state(api, alice, new, "m.room.topic"))["topic"] == "Old topic"
    assert await state(api, alice, new, "m.room.join_rules") == {"join_rule": "public"}
    assert await state(api, alice, new, "m.room.guest_access") == {"guest_access": "can_join"}
    enc = await state(api, alice, new, "m.room.encryption")
    assert enc == {"algorithm": "m.megolm.v1.aes-sha2"}
    assert await state(api, alice, new, "m.room.canonical_alias") == {"alias": "#club:localhost"}
    pl = await state(api, alice, new, "m.room.power_levels")
    assert alice.user_id not in pl["users"]  # v12: the creator is implicit

    tomb = await state(api, alice, room, "m.room.tombstone")
    assert tomb["replacement_room"] == new
    old_pl = await state(api, alice, room, "m.room.power_levels")
    assert old_pl["events_default"] == 50 and old_pl["invite"] == 50
    r = await api.put(
        f"/rooms/{room}/send/m.room.message/t1", {"body": "hi"}, token=bob.access_token
    )
    assert r.status == 403

    r = await api.get("/directory/room/%23club:localhost")
    assert r.body["room_id"] == new
    assert (await api.get(f"/directory/list/room/{new}")).body == {"visibility": "public"}
    assert (await api.get(f"/directory/list/room/{room}")).body == {"visibility": "private"}

    # The new room is usable by the upgrader.
    r = await api.put(f"/rooms/{new}/send/m.room.message/t2", {"body": "new"}, token=tok)
    assert r.status == 200


async def test_upgrade_names_the_tombstone_and_states_guest_access(api: Api) -> None:
    """Up to v11 the new room's predecessor names the tombstone (Sytest checks it); a
    room without guest_access gets an explicit "forbidden" (what no event means); an
    unknown room is 404."""
    alice = await api.register("alice")
    tok = alice.access_token
    room = await create_room(api, alice, room_version="10", preset="public_chat")
    assert await state(api, alice, room, "m.room.guest_access") is None
    r = await api.get("/sync", token=tok)
    since = r.body["next_batch"]
    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "2"}, token=tok)
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    r = await api.get("/sync", token=tok, params={"since": since})
    tombstone = r.body["rooms"]["join"][room]["timeline"]["events"][0]
    assert tombstone["type"] == "m.room.tombstone"
    assert tombstone["content"]["replacement_room"] == new
    first = r.body["rooms"]["join"][new]["timeline"]["events"][0]
    assert first["type"] == "m.room.create" and first["content"]["room_version"] == "2"
    assert first["content"]["predecessor"] == {"room_id": room, "event_id": tombstone["event_id"]}
    assert await state(api, alice, new, "m.room.guest_access") == {"guest_access": "forbidden"}

    r = await api.post("/rooms/!nowhere:unknown/upgrade", {"new_version": "2"}, token=tok)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_upgrade_carries_bans_and_m_federate(api: Api) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    room = await create_room(api, alice, creation_content={"m.federate": False})
    banned = "@bob:elsewhere.example"
    r = await api.post(f"/rooms/{room}/ban", {"user_id": banned, "reason": "spam"}, token=tok)
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "10"}, token=tok)
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    assert (await state(api, alice, new, "m.room.create"))["m.federate"] is False
    r = await api.get(f"/rooms/{new}/state/m.room.member/{banned}", token=tok)
    assert r.body == {"membership": "ban", "reason": "spam"}


async def test_tags_and_direct_follow_the_upgrade(api: Api) -> None:
    """The upgrader's and a joining member's tags and m.direct entries carry over."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    for user in (alice, bob):
        r = await api.put(
            f"/user/{user.user_id}/rooms/{room}/tags/u.work",
            {"order": 0.5},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        r = await api.put(
            f"/user/{user.user_id}/account_data/m.direct",
            {"@carol:elsewhere.example": [room]},
            token=user.access_token,
        )
        assert r.status == 200, r.body
    r = await api.post(f"/rooms/{room}/upgrade", {"new_version": "10"}, token=alice.access_token)
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    assert (await api.post(f"/join/{new}", {}, token=bob.access_token)).status == 200
    for user in (alice, bob):
        r = await api.get(f"/user/{user.user_id}/rooms/{new}/tags", token=user.access_token)
        assert r.body == {"tags": {"u.work": {"order": 0.5}}}
        r = await api.get(f"/user/{user.user_id}/account_data/m.direct", token=user.access_token)
        assert r.body == {"@carol:elsewhere.example": [room, new]}


async def test_upgrade_without_encryption_turns_it_off(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(
        api,
        alice,
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    tok = alice.access_token
    r = await api.put(f"/rooms/{room}/state/m.room.encryption/", {}, token=tok)
    assert r.status == 403 and "upgrade" in r.body["error"].lower()
    r = await api.post(
        f"/rooms/{room}/upgrade",
        {"new_version": "11", "net.myelin.without_encryption": True},
        token=tok,
    )
    assert r.status == 200, r.body
    new = r.body["replacement_room"]
    r = await api.get(f"/rooms/{new}/state/m.room.encryption/", token=tok)
    assert r.status == 404
    pl = await state(api, alice, new, "m.room.power_levels")
    assert pl["users"][alice.user_id] == 100


async def test_directory_visibility_and_public_rooms(make_server: ServerFactory) -> None:
    server: RunningServer = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        tok = alice.access_token
        rooms = []
        for i, name in enumerate(["Cats", "Dogs", "Birds"]):
            room = await create_room(
                api, alice, preset="public_chat", name=name, topic=f"All about {name.lower()}"
            )
            rooms.append(room)
            assert (await api.get(f"/directory/list/room/{room}")).body == {"visibility": "private"}
            if i == 1:
                assert (
                    await api.post(f"/rooms/{room}/join", {}, token=bob.access_token)
                ).status == 200
        # bob (a member without power) may not publish; a stranger gets 403 too
        r = await api.put(
            f"/directory/list/room/{rooms[1]}", {"visibility": "public"}, token=bob.access_token
        )
        assert r.status == 403
        r = await api.put(
            "/directory/list/room/!nope:localhost", {"visibility": "public"}, token=tok
        )
        assert r.status == 404
        assert (await api.get("/directory/list/room/!nope:localhost")).status == 404
        for room in rooms:
            r = await api.put(f"/directory/list/room/{room}", {"visibility": "public"}, token=tok)
            assert r.status == 200, r.body

        r = await api.get("/publicRooms")
        assert r.status == 200
        assert r.body["total_room_count_estimate"] == 3
        first = r.body["chunk"][0]
        assert first["room_id"] == rooms[1]  # two members: first
        assert first["num_joined_members"] == 2
        assert first["name"] == "Dogs" and first["topic"] == "All about dogs"
        assert first["join_rule"] == "public"
        assert first["world_readable"] is False and first["guest_can_join"] is False

        r = await api.get("/publicRooms", params={"limit": "2"})
        assert len(r.body["chunk"]) == 2 and "next_batch" in r.body
        r2 = await api.get("/publicRooms", params={"limit": "2", "since": r.body["next_batch"]})
        assert len(r2.body["chunk"]) == 1 and "prev_batch" in r2.body
        seen = {e["room_id"] for e in r.body["chunk"] + r2.body["chunk"]}
        assert seen == set(rooms)

        r = await api.post("/publicRooms", {"filter": {"generic_search_term": "BIRD"}}, token=tok)
        assert [e["room_id"] for e in r.body["chunk"]] == [rooms[2]]
        assert (await api.post("/publicRooms", {})).status == 401
        # Another server's directory is asked over federation; one that does not answer
        # gives a Matrix error.
        r = await api.get("/publicRooms", params={"server": f"127.0.0.1:{free_port()}"})
        assert r.status == 502 and r.errcode == "M_UNKNOWN"

        r = await api.put(f"/directory/list/room/{rooms[0]}", {"visibility": "private"}, token=tok)
        assert r.status == 200
        r = await api.get("/publicRooms")
        assert rooms[0] not in {e["room_id"] for e in r.body["chunk"]}


async def test_publishing_disabled_by_config(make_server: ServerFactory) -> None:
    server = await make_server(allow_public_room_publishing=False)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room = await create_room(api, alice)
        r = await api.put(
            f"/directory/list/room/{room}", {"visibility": "public"}, token=alice.access_token
        )
        assert r.status == 403


async def test_turn_server_and_protocols(make_server: ServerFactory) -> None:
    plain = await make_server()
    async with Api(plain.client_url) as api:
        alice = await api.register("alice")
        # No TURN server: 404 M_NOT_FOUND (MSC4166), not an object the schema forbids.
        r = await api.get("/voip/turnServer", token=alice.access_token)
        assert r.status == 404 and r.errcode == "M_NOT_FOUND"
        r = await api.get("/thirdparty/protocols", token=alice.access_token)
        assert r.status == 200 and r.body == {}
        assert (await api.get("/voip/turnServer")).status == 401
    turn = {"uris": ["turn:turn.example:3478?transport=udp"], "shared_secret": "s3cret"}
    configured = await make_server(turn=turn)
    async with Api(configured.client_url) as api:
        alice = await api.register("alice")
        r = await api.get("/voip/turnServer", token=alice.access_token)
        assert r.status == 200
        assert r.body["uris"] == turn["uris"]
        assert r.body["ttl"] == 86400
        expiry, user = r.body["username"].split(":", 1)
        assert user == alice.user_id and int(expiry) > 0
        mac = hmac.new(b"s3cret", r.body["username"].encode(), hashlib.sha1).digest()
        assert r.body["password"] == base64.b64encode(mac).decode()


async def register_guest(api: Api) -> User:
    r = await api.post("/register?kind=guest", {})
    assert r.status == 200, r.body
    return User(r.body["user_id"], r.body["access_token"], r.body["device_id"], "")


async def test_guests_join_only_can_join_rooms(api: Api) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    closed = await create_room(api, alice, preset="public_chat")
    open_room = await create_room(
        api,
        alice,
        preset="public_chat",
        initial_state=[{"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}],
    )
    guest = await register_guest(api)
    gtok = guest.access_token
    r = await api.post(f"/rooms/{closed}/join", {}, token=gtok)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(f"/join/{open_room}", {}, token=gtok)
    assert r.status == 200, r.body
    r = await api.put(f"/rooms/{open_room}/send/m.room.message/g1", {"body": "hi"}, token=gtok)
    assert r.status == 200
    assert (await api.get(f"/rooms/{open_room}/messages", token=gtok)).status == 200
    # endpoints outside the guest list are refused
    r = await api.post("/createRoom", {}, token=gtok)
    assert r.status == 403 and r.errcode == "M_GUEST_ACCESS_FORBIDDEN"
    r = await api.post(
        "/search", {"search_categories": {"room_events": {"search_term": "hi"}}}, token=gtok
    )
    assert r.errcode == "M_GUEST_ACCESS_FORBIDDEN"
    # guest access withdrawn: the guest is made to leave
    r = await api.put(
        f"/rooms/{open_room}/state/m.room.guest_access/", {"guest_access": "forbidden"}, token=tok
    )
    assert r.status == 200
    r = await api.get(f"/rooms/{open_room}/joined_members", token=tok)
    assert guest.user_id not in r.body["joined"]


async def test_reports(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        eve = await api.register("eve")
        room = await create_room(api, alice)
        tok = alice.access_token
        r = await api.put(f"/rooms/{room}/send/m.room.message/1", {"body": "spam"}, token=tok)
        event_id = r.body["event_id"]
        r = await api.post(
            f"/rooms/{room}/report/{event_id}", {"reason": "spam", "score": -100}, token=tok
        )
        assert r.status == 200 and r.body == {}
        # not a member: looks like an unknown event
        r = await api.post(
            f"/rooms/{room}/report/{event_id}", {"reason": "x"}, token=eve.access_token
        )
        assert r.status == 404 and r.errcode == "M_NOT_FOUND"
        r = await api.post(f"/rooms/{room}/report/$nope", {"reason": "x"}, token=tok)
        assert r.status == 404
        r = await api.post(f"/rooms/{room}/report/{event_id}", {"score": 5}, token=tok)
        assert r.status == 400
        # a room report needs no membership
        r = await api.post(f"/rooms/{room}/report", {"reason": "bad room"}, token=eve.access_token)
        assert r.status == 200
        assert (
            await api.post("/rooms/!nope:localhost/report", {"reason": "x"}, token=tok)
        ).status == 404
        reports = await server.hs.rooms_area.reports.store.recent()
        assert [(x["reporter"], x["event_id"], x["reason"]) for x in reports] == [
            (eve.user_id, None, "bad room"),
            (alice.user_id, event_id, "spam"),
        ]


async def test_canonical_alias_is_checked_and_follows_alias_deletion(api: Api) -> None:
    """Spec "Room aliases": new aliases in m.room.canonical_alias must exist and point to
    the room (400 M_BAD_ALIAS); deleting an alias removes it from the event (Sytest
    30rooms/05aliases)."""
    alice = await api.register("alice")
    tok = alice.access_token
    r = await api.post("/createRoom", {}, token=tok)
    room_id = r.body["room_id"]
    r = await api.post("/createRoom", {}, token=tok)
    other_room = r.body["room_id"]
    for alias, target in (("#here:localhost", room_id), ("#there:localhost", other_room)):
        r = await api.put(f"/directory/room/{quote(alias)}", {"room_id": target}, token=tok)
        assert r.status == 200, r.body
    path = f"/rooms/{room_id}/state/m.room.canonical_alias/"
    r = await api.put(path, {"alias": "%here:localhost"}, token=tok)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    for content in (
        {"alias": "#missing:localhost"},
        {"alias": "#here:localhost", "alt_aliases": ["#there:localhost"]},
        {"alt_aliases": "#here:localhost"},
    ):
        r = await api.put(path, content, token=tok)
        assert (r.status, r.errcode) == (400, "M_BAD_ALIAS"), content
    r = await api.put(
        path, {"alias": "#here:localhost", "alt_aliases": ["#here:localhost"]}, token=tok
    )
    assert r.status == 200, r.body
    assert (
        await api.delete(f"/directory/room/{quote('#here:localhost')}", token=tok)
    ).status == 200
    r = await api.get(path, token=tok)
    assert r.status == 200 and "alias" not in r.body and r.body.get("alt_aliases") == []
    # Removing aliases is never checked.
    assert (await api.put(path, {}, token=tok)).status == 200
