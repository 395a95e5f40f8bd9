"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server: depth-first order,
child ordering, max_depth, suggested_only, pagination, who may see what."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room

HIERARCHY = "/_matrix/client/v1/rooms/{}/hierarchy"


async def add_child(api: Api, user: User, space: str, child: str, **content: Any) -> None:
    r = await api.put(
        f"/rooms/{space}/state/m.space.child/{child}",
        {"via": ["localhost"], **content},
        token=user.access_token,
    )
    assert r.status == 200, r.body


async def space(api: Api, user: User, name: str, **body: Any) -> str:
    return await create_room(
        api, user, name=name, preset="public_chat", creation_content={"type": "m.space"}, **body
    )


async def hierarchy(api: Api, user: User, room: str, **params: str) -> Any:
    return await api.get(HIERARCHY.format(room), token=user.access_token, params=params)


async def test_nested_space_depth_first_with_order(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    top = await space(api, alice, "Top")
    sub = await space(api, alice, "Sub")
    a = await create_room(api, alice, name="A", preset="public_chat")
    b = await create_room(api, alice, name="B", preset="public_chat")
    deep = await create_room(api, alice, name="Deep", preset="public_chat")
    secret = await create_room(api, alice, name="Secret", preset="private_chat")
    await add_child(api, alice, top, a, order="b")
    await add_child(api, alice, top, sub, order="a", suggested=True)
    await add_child(api, alice, top, b)  # no order: after the ordered ones
    await add_child(api, alice, top, secret)
    await add_child(api, alice, sub, deep, suggested=True)
    # A child without via does not count.
    r = await api.put(
        f"/rooms/{top}/state/m.space.child/!gone:localhost", {}, token=alice.access_token
    )
    assert r.status == 200

    r = await hierarchy(api, bob, top)
    assert r.status == 200, r.body
    names = [room["name"] for room in r.body["rooms"]]
    # Depth first: Sub (order "a") and its child, then A (order "b"), then B; Secret is
    # invite-only and bob is not in it.
    assert names == ["Top", "Sub", "Deep", "A", "B"]
    root = r.body["rooms"][0]
    assert root["room_type"] == "m.space"
    assert root["join_rule"] == "public"
    assert root["num_joined_members"] == 1
    assert {c["state_key"] for c in root["children_state"]} == {a, b, sub, secret}
    assert all("origin_server_ts" in c for c in root["children_state"])
    assert r.body["rooms"][3]["children_state"] == []
    assert "next_batch" not in r.body
    # Alice is in the secret room: she sees it.
    r = await hierarchy(api, alice, top)
    assert [room["name"] for room in r.body["rooms"]] == ["Top", "Sub", "Deep", "A", "B", "Secret"]

    r = await hierarchy(api, bob, top, max_depth="1")
    assert [room["name"] for room in r.body["rooms"]] == ["Top", "Sub", "A", "B"]
    r = await hierarchy(api, bob, top, max_depth="0")
    assert [room["name"] for room in r.body["rooms"]] == ["Top"]
    r = await hierarchy(api, bob, top, suggested_only="true")
    assert [room["name"] for room in r.body["rooms"]] == ["Top", "Sub", "Deep"]

    # Pages of two.
    seen: list[str] = []
    token = None
    for _ in range(10):
        params = {"limit": "2"} if token is None else {"limit": "2", "from": token}
        r = await hierarchy(api, bob, top, **params)
        assert r.status == 200, r.body
        seen += [room["name"] for room in r.body["rooms"]]
        token = r.body.get("next_batch")
        if token is None:
            break
    assert seen == ["Top", "Sub", "Deep", "A", "B"]


async def test_refusals(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    private = await create_room(
        api, alice, preset="private_chat", creation_content={"type": "m.space"}
    )
    r = await hierarchy(api, bob, private)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await hierarchy(api, bob, "!nowhere:localhost")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    top = await space(api, alice, "Top")
    for params in ({"limit": "0"}, {"limit": "x"}, {"max_depth": "-1"}, {"suggested_only": "yes"}):
        r = await hierarchy(api, alice, top, **params)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), params
    r = await hierarchy(api, alice, top, **{"from": "garbage"})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    first = await space(api, alice, "Child")
    await add_child(api, alice, top, first)
    r = await hierarchy(api, alice, top, limit="1")
    token = r.body["next_batch"]
    # The token is bound to the query it came from.
    r = await hierarchy(api, alice, top, limit="1", suggested_only="true", **{"from": token})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.get(HIERARCHY.format(top))
    assert r.status == 401
