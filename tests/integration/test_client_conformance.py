"""Client-API answers shaped as clients (and Sytest) expect where the spec leaves room:
joined_members with null profile fields, extra keys of a /join body in the member
event, and a sync filter with a timeline limit of 0."""

from __future__ import annotations

import json
from urllib.parse import quote

from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room


async def test_joined_members_gives_null_profile_fields(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.put(
        f"/profile/{alice.user_id}/displayname", {"displayname": "Al"}, token=alice.access_token
    )
    assert r.status == 200
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    r = await api.get(f"/rooms/{room}/joined_members", token=alice.access_token)
    assert r.status == 200, r.body
    assert r.body["joined"][alice.user_id] == {"display_name": "Al", "avatar_url": None}
    assert r.body["joined"][bob.user_id] == {"display_name": "bob", "avatar_url": None}


async def test_join_body_keys_go_into_the_member_event(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(api, alice, preset="public_chat")
    alias = "#hall:localhost"
    r = await api.put(
        f"/directory/room/{quote(alias)}", {"room_id": room}, token=alice.access_token
    )
    assert r.status == 200
    custom = {"foo": "bar", "membership": "leave", "reason": "hi", "num": 3}
    for user, target in ((bob, room), (carol, quote(alias))):
        r = await api.post(f"/join/{target}", custom, token=user.access_token)
        assert r.status == 200, r.body
        r = await api.get(
            f"/rooms/{room}/state/m.room.member/{user.user_id}", token=user.access_token
        )
        assert r.status == 200
        # Extra keys are copied; membership cannot be overridden.
        assert r.body["foo"] == "bar" and r.body["num"] == 3 and r.body["reason"] == "hi"
        assert (
            r.body["membership"] == "join"
            and r.body["displayname"] == user.user_id[1:].split(":")[0]
        )
    # Auth-relevant keys of a join cannot be forged by the client.
    dave = await api.register("dave")
    r = await api.post(
        f"/join/{room}",
        {"join_authorised_via_users_server": alice.user_id},
        token=dave.access_token,
    )
    assert r.status == 200, r.body
    r = await api.get(f"/rooms/{room}/state/m.room.member/{dave.user_id}", token=dave.access_token)
    assert "join_authorised_via_users_server" not in r.body
    # Content that no event may carry (a fraction) is a clear error, not a 500.
    erin = await api.register("erin")
    r = await api.post(f"/join/{room}", {"x": 1.5}, token=erin.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON", r.body


async def test_sync_filter_with_timeline_limit_zero(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice)
    flt = {"room": {"state": {"types": ["m.room.member"]}, "timeline": {"limit": 0}}}
    r = await api.get("/sync", token=alice.access_token, params={"filter": json.dumps(flt)})
    assert r.status == 200, r.body
    joined = r.body["rooms"]["join"][room]
    assert joined["timeline"]["events"] == [] and joined["timeline"]["limited"] is True
    assert [e["type"] for e in joined["state"]["events"]] == ["m.room.member"]
    # Incremental: a new message is left out too, and the gap is reported.
    r2 = await api.put(
        f"/rooms/{room}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "x"},
        token=alice.access_token,
    )
    assert r2.status == 200
    r = await api.get(
        "/sync",
        token=alice.access_token,
        params={"filter": json.dumps(flt), "since": r.body["next_batch"], "timeout": "0"},
    )
    assert r.status == 200, r.body
    timeline = r.body["rooms"]["join"][room]["timeline"]
    assert timeline["events"] == [] and timeline["limited"] is True
    bad = {"room": {"timeline": {"limit": -1}}}
    r = await api.get("/sync", token=alice.access_token, params={"filter": json.dumps(bad)})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_a_receipt_never_moves_backwards(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice)
    r = await api.get(
        f"/rooms/{room}/state/m.room.member/{alice.user_id}",
        token=alice.access_token,
        params={"format": "event"},
    )
    assert r.status == 200, r.body
    older = r.body["event_id"]
    r = await api.put(
        f"/rooms/{room}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "x"},
        token=alice.access_token,
    )
    newer = r.body["event_id"]

    async def read_up_to() -> list[str]:
        r = await api.get("/initialSync", token=alice.access_token, params={"limit": "1"})
        assert r.status == 200, r.body
        return [
            event_id
            for receipt in r.body["receipts"]
            if receipt["room_id"] == room
            for event_id, kinds in receipt["content"].items()
            if alice.user_id in kinds.get("m.read", {})
        ]

    for event_id in (older, newer, older):
        r = await api.post(f"/rooms/{room}/receipt/m.read/{event_id}", {}, token=alice.access_token)
        assert r.status == 200, r.body
    # The last (older) receipt was accepted but left the newer one in place.
    assert await read_up_to() == [newer]
