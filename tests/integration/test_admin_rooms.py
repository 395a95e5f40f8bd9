"""Admin API for rooms over HTTP: listing, details, members, state, block, shut down."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api, User
from tests.integration.admin_support import V1, V2, make_admin


async def create_room(api: Api, user: User, **body: object) -> str:
    r = await api.post("/createRoom", body, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def test_only_admins(server: RunningServer, api: Api) -> None:
    bob = await api.register("bob")
    room = await create_room(api, bob)
    for method, path in (
        ("GET", V1 + "/rooms"),
        ("GET", f"{V1}/rooms/{room}"),
        ("GET", f"{V1}/rooms/{room}/members"),
        ("GET", f"{V1}/rooms/{room}/state"),
        ("GET", f"{V1}/rooms/{room}/block"),
        ("PUT", f"{V1}/rooms/{room}/block"),
        ("DELETE", f"{V2}/rooms/{room}"),
        ("GET", f"{V2}/rooms/{room}/delete_status"),
        ("GET", f"{V2}/rooms/delete_status/abc"),
    ):
        r = await api.request(method, path, {"block": True})
        assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), (method, path)
        r = await api.request(method, path, {"block": True}, token=bob.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), (method, path)
    # Still bob's room, still joinable.
    r = await api.get(f"/rooms/{room}/joined_members", token=bob.access_token)
    assert list(r.body["joined"]) == ["@bob:localhost"]


async def test_list_and_details(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    big = await create_room(
        api, alice, name="Big room", preset="public_chat", room_alias_name="big"
    )
    await api.post(f"/join/{big}", {}, token=bob.access_token)
    small = await create_room(api, bob, name="a small room")
    secret = await create_room(
        api,
        bob,
        name="Zebra",
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    r = await api.get(V1 + "/rooms", token=t)
    assert r.status == 200, r.body
    assert r.body["total_rooms"] == 3 and r.body["offset"] == 0
    assert [e["room_id"] for e in r.body["rooms"]] == [big, secret, small]  # by name (bytes)
    entry = r.body["rooms"][0]
    assert entry["name"] == "Big room" and entry["canonical_alias"] == "#big:localhost"
    assert entry["joined_members"] == 2 and entry["joined_local_members"] == 2
    assert entry["creator"] == "@alice:localhost" and entry["version"] == "12"
    assert entry["join_rules"] == "public" and entry["federatable"] is True
    assert entry["encryption"] is None and entry["state_events"] >= 6
    assert r.body["rooms"][1]["encryption"] == "m.megolm.v1.aes-sha2"

    r = await api.get(V1 + "/rooms", token=t, params={"order_by": "joined_members", "limit": "1"})
    assert [e["room_id"] for e in r.body["rooms"]] == [big] and r.body["next_batch"] == 1
    r = await api.get(V1 + "/rooms", token=t, params={"from": "1", "limit": "1", "dir": "b"})
    assert [e["room_id"] for e in r.body["rooms"]] == [secret] and r.body["prev_batch"] == 0
    r = await api.get(V1 + "/rooms", token=t, params={"search_term": "SMALL"})
    assert [e["room_id"] for e in r.body["rooms"]] == [small]
    r = await api.get(V1 + "/rooms", token=t, params={"search_term": small})
    assert [e["room_id"] for e in r.body["rooms"]] == [small]
    for bad in ({"order_by": "colour"}, {"dir": "x"}, {"limit": "-5"}):
        r = await api.get(V1 + "/rooms", token=t, params=bad)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), bad

    r = await api.get(f"{V1}/rooms/{big}", token=t)
    assert r.status == 200 and r.body["room_id"] == big and r.body["joined_local_devices"] == 2
    assert r.body["public"] is False and r.body["blocked"] is False
    r = await api.get(f"{V1}/rooms/{big}/members", token=t)
    assert r.body == {"members": ["@alice:localhost", "@bob:localhost"], "total": 2}
    r = await api.get(f"{V1}/rooms/{big}/state", token=t)
    types = {e["type"] for e in r.body["state"]}
    assert {"m.room.create", "m.room.member", "m.room.name", "m.room.join_rules"} <= types
    assert all(e["room_id"] == big and "event_id" in e for e in r.body["state"])
    for path in (f"{V1}/rooms/!nope:localhost", f"{V1}/rooms/!nope:localhost/members"):
        r = await api.get(path, token=t)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path
    r = await api.get(f"{V1}/rooms/not-a-room", token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")


async def test_shutdown_removes_local_users_and_blocks(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(api, alice, preset="public_chat", room_alias_name="doomed")
    await api.put(
        f"/directory/list/room/{room}", {"visibility": "public"}, token=alice.access_token
    )
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    r = await api.post(
        f"/rooms/{room}/invite", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert r.status == 200

    # Bad bodies change nothing.
    for body in ({"block": "yes"}, {"purge": "yes"}, {"new_room_user_id": "@root:localhost"}):
        r = await api.delete(f"{V2}/rooms/{room}", body, token=t)
        assert (r.status, r.errcode) in ((400, "M_BAD_JSON"), (400, "M_INVALID_PARAM")), body
    r = await api.get(f"{V1}/rooms/{room}/members", token=t)
    assert r.body["total"] == 2
    r = await api.delete(f"{V2}/rooms/!unknown:localhost", {"block": False}, token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    r = await api.delete(f"{V2}/rooms/{room}", {"block": True, "purge": False}, token=t)
    assert r.status == 200, r.body
    delete_id = r.body["delete_id"]
    r = await api.get(f"{V2}/rooms/{room}/delete_status", token=t)
    assert r.status == 200
    (result,) = r.body["results"]
    assert result["delete_id"] == delete_id and result["status"] == "complete"
    shutdown = result["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == [alice.user_id, bob.user_id, carol.user_id], shutdown
    assert shutdown["failed_to_kick_users"] == []
    assert shutdown["local_aliases"] == ["#doomed:localhost"]
    r = await api.get(f"{V2}/rooms/delete_status/{delete_id}", token=t)
    assert r.body["status"] == "complete" and "delete_id" not in r.body
    r = await api.get(f"{V2}/rooms/delete_status/nope", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    # Local members are gone; nobody local can come back in.
    r = await api.get(f"{V1}/rooms/{room}/members", token=t)
    assert r.body == {"members": [], "total": 0}
    for user in (alice, bob, carol):
        r = await api.get("/joined_rooms", token=user.access_token)
        assert room not in r.body["joined_rooms"]
        r = await api.post(f"/join/{room}", {}, token=user.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), user.user_id
    r = await api.get("/directory/room/%23doomed:localhost")
    assert r.status == 404
    r = await api.get("/publicRooms")
    assert room not in [c["room_id"] for c in r.body["chunk"]]
    r = await api.get(f"{V1}/rooms/{room}/block", token=t)
    assert r.body == {"block": True, "user_id": root.user_id}

    # Unblocking lets people in again.
    r = await api.put(f"{V1}/rooms/{room}/block", {"block": False}, token=t)
    assert r.body == {"block": False}
    assert (await api.get(f"{V1}/rooms/{room}/block", token=t)).body == {"block": False}


async def test_block_before_shutdown_and_invites(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice)
    r = await api.put(f"{V1}/rooms/{room}/block", {"block": True}, token=t)
    assert r.status == 200
    r = await api.post(f"/rooms/{room}/invite", {"user_id": bob.user_id}, token=alice.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.put(f"{V1}/rooms/{room}/block", {"block": 1}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    # An unknown room can be blocked ahead of time.
    r = await api.delete(f"{V2}/rooms/!later:elsewhere.org", {"block": True}, token=t)
    assert r.status == 200
    r = await api.get(f"{V1}/rooms/!later:elsewhere.org/block", token=t)
    assert r.body["block"] is True
