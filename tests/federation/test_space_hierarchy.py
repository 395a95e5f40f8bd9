"""A space whose sub-space and rooms live on two Myelin servers, browsed from each side
(client GET /hierarchy filled in over federation GET /hierarchy/{roomId})."""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.federation.rooms_support import name, q, register, settle
from tests.helpers import Api, User


async def make_space(api: Api, user: User, room_name: str) -> str:
    r = await api.post(
        "/createRoom",
        {"name": room_name, "preset": "public_chat", "creation_content": {"type": "m.space"}},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def make_room(api: Api, user: User, room_name: str, preset: str = "public_chat") -> str:
    r = await api.post(
        "/createRoom", {"name": room_name, "preset": preset}, token=user.access_token
    )
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def add_child(
    api: Api, user: User, parent: str, child: str, server: RunningServer, **content: Any
) -> None:
    r = await api.put(
        f"/rooms/{q(parent)}/state/m.space.child/{q(child)}",
        {"via": [name(server)], **content},
        token=user.access_token,
    )
    assert r.status == 200, r.body


async def names(api: Api, user: User, room: str, **params: str) -> list[str]:
    r = await api.get(
        f"/_matrix/client/v1/rooms/{q(room)}/hierarchy", token=user.access_token, params=params
    )
    assert r.status == 200, r.body
    return [str(room.get("name")) for room in r.body["rooms"]]


async def test_space_across_two_servers_browsed_from_each(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    # On A: the top space, a room in it and a private room bob may not see.
    top = await make_space(api_a, alice, "Top on A")
    lobby = await make_room(api_a, alice, "Lobby on A")
    hidden = await make_room(api_a, alice, "Hidden on A", preset="private_chat")
    # On B: a sub-space with a room of its own.
    sub = await make_space(api_b, bob, "Sub on B")
    garden = await make_room(api_b, bob, "Garden on B")
    await add_child(api_b, bob, sub, garden, b)
    await add_child(api_a, alice, top, sub, b, order="1")
    await add_child(api_a, alice, top, lobby, a, order="2")
    await add_child(api_a, alice, top, hidden, a, order="3")

    # From A: the sub-space and its room are not known here and come from B.
    assert await names(api_a, alice, top) == [
        "Top on A",
        "Sub on B",
        "Garden on B",
        "Lobby on A",
        "Hidden on A",
    ]
    assert await names(api_a, alice, top, max_depth="1") == [
        "Top on A",
        "Sub on B",
        "Lobby on A",
        "Hidden on A",
    ]
    # From B: bob joins the top space; its lobby (on A) comes from A, the hidden room not.
    r = await api_b.post(f"/join/{q(top)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    assert await names(api_b, bob, top) == ["Top on A", "Sub on B", "Garden on B", "Lobby on A"]

    # The federation answer itself: the hidden room is listed as inaccessible to B.
    fed = b.hs.federation
    assert fed is not None
    answer = await fed.client.get_json(name(a), f"/_matrix/federation/v1/hierarchy/{q(top)}")
    assert answer["room"]["room_id"] == top
    assert {c["room_id"] for c in answer["children"]} == {lobby}
    assert answer["inaccessible_children"] == [hidden]
    for client in (api_a, api_b):
        await client.__aexit__(None, None, None)
