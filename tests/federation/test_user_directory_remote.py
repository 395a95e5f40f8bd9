"""Remote users in the user directory: found by the display name of their join event
while a local user shares their public room, gone once this server has left it
(Sytest 52user-directory/01public "after server left room")."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, settle
from tests.helpers import Api, User


async def found(api: Api, searcher: User, term: str) -> list[str]:
    r = await api.post("/user_directory/search", {"search_term": term}, token=searcher.access_token)
    assert r.status == 200, r.body
    return [x["user_id"] for x in r.body["results"]]


async def test_remote_user_found_by_name_until_the_server_leaves(
    make_server: ServerFactory,
) -> None:
    a: RunningServer = await make_server(federated=True)
    b: RunningServer = await make_server(federated=True)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.put(
        f"/profile/{q(alice.user_id)}/displayname",
        {"displayname": "Queen Of Hearts"},
        token=alice.access_token,
    )
    assert r.status == 200
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room = r.body["room_id"]
    r = await api_b.post(
        f"/join/{q(room)}", {}, token=bob.access_token, params={"server_name": name(a)}
    )
    assert r.status == 200, r.body
    await settle(a, b)
    # B learnt the room's state with the join: public, and Alice's name in it.
    assert await found(api_b, bob, "hearts") == [alice.user_id]
    r = await api_b.post(f"/rooms/{q(room)}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    assert await found(api_b, bob, "hearts") == []
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
