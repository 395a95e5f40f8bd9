"""Restricted rooms admit members of their allowed rooms (a space) on the same server:
a local join without an invite, authorised by a local member who may invite."""

from __future__ import annotations

from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room


async def test_local_user_joins_restricted_room_through_space(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await create_room(
        api, alice, preset="public_chat", creation_content={"type": "m.space"}
    )
    allow = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    room = await create_room(
        api,
        alice,
        preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": allow}],
    )
    # Not in the space: refused, and nothing changes.
    r = await api.post(f"/join/{room}", {}, token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
    r = await api.get(f"/rooms/{room}/joined_members", token=alice.access_token)
    assert set(r.body["joined"]) == {alice.user_id}

    assert (await api.post(f"/join/{space}", {}, token=bob.access_token)).status == 200
    r = await api.post(f"/join/{room}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.get(f"/rooms/{room}/state/m.room.member/{bob.user_id}", token=bob.access_token)
    assert r.body["membership"] == "join"
    assert r.body["join_authorised_via_users_server"] == alice.user_id
    # The room shows up in the space's hierarchy for bob (he may join it).
    r = await api.put(
        f"/rooms/{space}/state/m.space.child/{room}",
        {"via": ["localhost"]},
        token=alice.access_token,
    )
    assert r.status == 200
    r = await api.get(f"/_matrix/client/v1/rooms/{space}/hierarchy", token=bob.access_token)
    assert [x["room_id"] for x in r.body["rooms"]] == [space, room]
    assert r.body["rooms"][1]["allowed_room_ids"] == [space]


async def test_invited_user_joins_restricted_room_without_authoriser(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    space = await create_room(api, alice, preset="public_chat")
    allow = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    room = await create_room(
        api,
        alice,
        preset="private_chat",
        invite=[bob.user_id],
        initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": allow}],
    )
    r = await api.post(f"/join/{room}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.get(f"/rooms/{room}/state/m.room.member/{bob.user_id}", token=bob.access_token)
    assert "join_authorised_via_users_server" not in r.body
