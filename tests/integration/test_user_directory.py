"""The user directory's default scope (users sharing a room with the searcher, or in a
public room: join rule public or history world_readable), kept up to date as
memberships, join rules and history visibility change; ``search_all_users`` widens it
to every local account; rooms from before migration 0340 are filled in by the backfill."""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from homeserver.rooms.user_directory import backfill
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


async def found(api: Api, searcher: User, term: str) -> list[str]:
    r = await api.post("/user_directory/search", {"search_term": term}, token=searcher.access_token)
    assert r.status == 200, r.body
    return [x["user_id"] for x in r.body["results"]]


async def set_name(api: Api, user: User, name: str) -> None:
    r = await api.put(
        f"/profile/{user.user_id}/displayname", {"displayname": name}, token=user.access_token
    )
    assert r.status == 200


async def put_state(api: Api, user: User, room: str, kind: str, content: dict[str, Any]) -> None:
    r = await api.put(f"/rooms/{room}/state/{kind}/", content, token=user.access_token)
    assert r.status == 200, r.body


async def test_private_rooms_stay_private_until_shared(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    await set_name(api, alice, "Wonderland Alice")
    room = await create_room(api, alice, preset="private_chat", invite=[bob.user_id])
    # Alice is in a private room only: no one outside it finds her, nor does she
    # find herself.
    assert await found(api, eve, "wonderland") == []
    assert await found(api, bob, "wonderland") == []
    assert await found(api, alice, "wonderland") == []
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    assert await found(api, bob, "wonderland") == [alice.user_id]
    assert await found(api, eve, "wonderland") == []
    # Alice's display name in the room is found as well as her user id.
    assert await found(api, bob, "alice") == [alice.user_id]
    assert (await api.post(f"/rooms/{room}/leave", {}, token=bob.access_token)).status == 200
    assert await found(api, bob, "wonderland") == []


async def test_public_room_members_appear_and_disappear(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await create_room(api, alice, preset="public_chat")
    assert await found(api, eve, "bob") == []
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    assert await found(api, eve, "bob") == [bob.user_id]
    assert await found(api, bob, "bob") == [bob.user_id]
    assert (await api.post(f"/rooms/{room}/leave", {}, token=bob.access_token)).status == 200
    assert await found(api, eve, "bob") == []


async def test_join_rules_and_history_visibility_changes(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await create_room(api, alice, preset="private_chat", invite=[bob.user_id])
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    assert await found(api, eve, "bob") == []
    await put_state(api, alice, room, "m.room.join_rules", {"join_rule": "public"})
    assert await found(api, eve, "bob") == [bob.user_id]
    await put_state(
        api, alice, room, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    await put_state(api, alice, room, "m.room.join_rules", {"join_rule": "invite"})
    # Still public: its history is world_readable.
    assert await found(api, eve, "bob") == [bob.user_id]
    await put_state(api, alice, room, "m.room.history_visibility", {"history_visibility": "shared"})
    assert await found(api, eve, "bob") == []


async def test_deactivated_and_guest_users_are_left_out(api: Api, server: RunningServer) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    assert await found(api, alice, "bob") == [bob.user_id]
    await server.hs.db.execute("UPDATE users SET deactivated = 1 WHERE user_id = $1", bob.user_id)
    assert await found(api, alice, "bob") == []


async def test_search_all_users_finds_every_local_account(make_server: ServerFactory) -> None:
    server = await make_server(user_directory={"search_all_users": True})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        assert await found(api, alice, "bob") == [bob.user_id]


async def test_backfill_fills_rooms_from_before_the_migration(
    api: Api, server: RunningServer
) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    await set_name(api, bob, "Builder")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    db = server.hs.db
    # As a database migrated by 0340 leaves an older room: no flags, no names.
    await db.execute(
        "UPDATE rooms SET join_rule = NULL, history_visibility = NULL, directory_flags_known = 0"
    )
    await db.execute("UPDATE room_memberships SET displayname = NULL")
    assert await found(api, eve, "builder") == []
    area = server.hs.rooms_area
    await backfill(db, area.rooms.rooms, area.memberships_store)
    assert await found(api, eve, "builder") == [bob.user_id]
    assert await backfill(db, area.rooms.rooms, area.memberships_store) == 0
