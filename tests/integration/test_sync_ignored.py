"""Ignoring users (spec: "Ignoring Users") in /sync over real HTTP: their messages leave
the timeline, a room with nothing else new is left out, their invites are not shown
(Sytest 49ignore)."""

from __future__ import annotations

from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import shared_room, sync


async def test_ignored_users_messages_and_invites_are_hidden(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    await send_text(api, bob, room_id, "before", "t1")
    r = await api.put(
        f"/user/{alice.user_id}/account_data/m.ignored_user_list",
        {"ignored_users": {bob.user_id: {}}},
        token=alice.access_token,
    )
    assert r.status == 200
    first = await sync(api, alice)
    timeline = first["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e for e in timeline if e["sender"] == bob.user_id and "state_key" not in e] == []
    # bob's membership (state) is still there.
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in timeline)

    await send_text(api, bob, room_id, "hidden", "t2")
    quiet = await sync(api, alice, first["next_batch"])
    assert room_id not in quiet["rooms"]["join"]
    await send_text(api, alice, room_id, "mine", "t3")
    mine = await sync(api, alice, quiet["next_batch"])
    bodies = [
        e["content"].get("body") for e in mine["rooms"]["join"][room_id]["timeline"]["events"]
    ]
    assert bodies == ["mine"]

    other = await create_room(api, bob)
    r = await api.post(f"/rooms/{other}/invite", {"user_id": alice.user_id}, token=bob.access_token)
    assert r.status == 200
    assert other not in (await sync(api, alice, mine["next_batch"]))["rooms"]["invite"]
    assert other not in (await sync(api, alice))["rooms"]["invite"]
